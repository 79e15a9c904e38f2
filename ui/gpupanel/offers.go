package gpupanel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/remote/vast"
)

// offerColumns are the offers table's headers.
var offerColumns = []string{"ID", "GPU", "VRAM", "$/h", "Disk", "Download", "Reliability", "Location"}

var offerColumnWidths = []float32{90, 150, 70, 70, 70, 100, 90, 160}

type orderChoice struct {
	name  string
	field string
	desc  bool
}

var orders = []orderChoice{
	{"Price, cheapest first", "dph", false},
	{"Download speed", "inet_down", true},
	{"Reliability", "reliability", true},
	{"Vast score", "score", true},
}

func orderNames() []string {
	out := make([]string, len(orders))
	for i, o := range orders {
		out[i] = o.name
	}
	return out
}

func (v *View) newOffersTable() *widget.Table {
	t := widget.NewTableWithHeaders(
		func() (int, int) { return len(v.offers), len(offerColumns) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(id widget.TableCellID, o fyne.CanvasObject) {
			o.(*widget.Label).SetText(v.offerCell(id.Row, id.Col))
		})
	t.ShowHeaderColumn = false
	t.CreateHeader = func() fyne.CanvasObject {
		l := widget.NewLabel("")
		l.TextStyle = fyne.TextStyle{Bold: true}
		return l
	}
	t.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		text := ""
		if id.Row < 0 && id.Col >= 0 && id.Col < len(offerColumns) {
			text = offerColumns[id.Col]
		}
		o.(*widget.Label).SetText(text)
	}
	for i, w := range offerColumnWidths {
		t.SetColumnWidth(i, w)
	}
	t.OnSelected = func(id widget.TableCellID) {
		if id.Row >= 0 && id.Row < len(v.offers) {
			v.selected = id.Row
			o := v.offers[id.Row]
			v.OffersInfo.SetText(fmt.Sprintf("Selected offer %d: %s in %s at $%.4f/h.", o.ID, gpuText(o), o.Geolocation, o.DPHTotal))
			v.updateButtons()
		}
	}
	return t
}

// offerCell is the text of one cell of the offers table.
func (v *View) offerCell(row, col int) string {
	if row < 0 || row >= len(v.offers) {
		return ""
	}
	o := v.offers[row]
	switch col {
	case 0:
		return strconv.FormatInt(o.ID, 10)
	case 1:
		return gpuText(o)
	case 2:
		return fmt.Sprintf("%.0f GB", o.VRAMGB())
	case 3:
		return fmt.Sprintf("%.4f", o.DPHTotal)
	case 4:
		return fmt.Sprintf("%.0f GB", o.DiskSpace)
	case 5:
		return fmt.Sprintf("%.0f Mb/s", o.InetDown)
	case 6:
		return fmt.Sprintf("%.1f%%", o.Reliability*100)
	case 7:
		return o.Geolocation
	}
	return ""
}

func gpuText(o vast.Offer) string {
	if o.NumGPUs > 1 {
		return fmt.Sprintf("%d× %s", o.NumGPUs, o.GPUName)
	}
	return o.GPUName
}

// parsePositive reads an entry holding a positive number; empty gives def.
func parsePositive(what, text string, def float64) (float64, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(strings.TrimPrefix(text, "$"), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s: %q is not a number", what, text)
	}
	if f <= 0 {
		return 0, fmt.Errorf("%s must be more than 0, not %s", what, text)
	}
	return f, nil
}

// diskGB reads the disk entry: the disk to rent, and the offers' minimum.
func (v *View) diskGB() (float64, error) {
	d, err := parsePositive("Min disk", v.Disk.Text, 50)
	if err == nil && d > 100000 {
		err = fmt.Errorf("Min disk: %s GB is more than any host has", strings.TrimSpace(v.Disk.Text))
	}
	return d, err
}

// query builds the search from the filter entries.
func (v *View) query() (vast.OfferQuery, error) {
	q := vast.NewOfferQuery()
	q.GPUName = strings.Join(strings.Fields(v.GPU.Text), " ")
	disk, err := v.diskGB()
	if err != nil {
		return q, err
	}
	q.MinDiskGB = disk
	if q.MaxPrice, err = parsePositive("Max $/h", v.MaxPrice.Text, 0); err != nil {
		return q, err
	}
	if i := v.Order.SelectedIndex(); i >= 0 && i < len(orders) {
		q.Order, q.Descending = orders[i].field, orders[i].desc
	}
	return q, nil
}

// search is the Search button: it runs the offer search (UI goroutine).
func (v *View) search() { v.runSearch(true) }

// runSearch searches with the filters; a newer search replaces an older
// one still running. clearError is false when the search follows a
// failure that must stay on screen.
func (v *View) runSearch(clearError bool) {
	if v.m == nil {
		return
	}
	q, err := v.query()
	if err != nil {
		v.Error.SetText(err.Error())
		return
	}
	if clearError {
		v.Error.SetText("")
	}
	v.searchGen++
	gen := v.searchGen
	v.OffersInfo.SetText("Searching Vast.ai…")
	if v.searchCancel != nil {
		v.searchCancel() // its result is dropped by gen anyway
	}
	ctx, cancel := context.WithCancel(v.ctx)
	v.searchCancel = cancel
	ok := v.goRun(func() {
		defer cancel()
		offers, err := v.m.Offers(ctx, q)
		v.ui(func() {
			if gen != v.searchGen {
				return
			}
			if err != nil {
				v.OffersInfo.SetText("Search failed.")
				v.Error.SetText("Search failed: " + describe(err))
				return
			}
			v.setOffers(offers)
		})
	})
	if !ok {
		cancel()
	}
}

func (v *View) setOffers(offers []vast.Offer) {
	v.offers = offers
	v.selected = -1
	v.Offers.UnselectAll()
	v.Offers.Refresh()
	switch len(offers) {
	case 0:
		v.OffersInfo.SetText("No offers match: loosen the GPU name, disk or price.")
	case 1:
		v.OffersInfo.SetText("1 offer. Select it, then Rent.")
	default:
		v.OffersInfo.SetText(fmt.Sprintf("%d offers. Select one, then Rent.", len(offers)))
	}
	v.updateButtons()
}

// describe puts an error in words a user can act on.
func describe(err error) string {
	switch {
	case errors.Is(err, vast.ErrNoKey):
		return err.Error()
	case errors.Is(err, vast.ErrAuth):
		return "Vast.ai rejected the API key: set a valid one (VAST_API_KEY, or `vastai set api-key KEY`). (" + err.Error() + ")"
	case errors.Is(err, vast.ErrRateLimited):
		return "Vast.ai is limiting how often pixery may ask; wait a minute and try again. (" + err.Error() + ")"
	}
	return err.Error()
}
