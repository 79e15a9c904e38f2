package gpupanel

import (
	"fmt"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/pixery/pixery/remote/vast"
	"github.com/pixery/pixery/remote/vast/vastfake"
)

// BenchmarkShowOffers measures putting a page of search results (64
// offers) into the table, alone and with rendering the 1100×900 panel
// (software painter), as after a search.
func BenchmarkShowOffers(b *testing.B) {
	test.NewTempApp(b)
	v := New(Deps{})
	win := test.NewTempWindow(b, v.Content())
	win.Resize(fyne.NewSize(1100, 900))
	base := vastfake.DefaultOffers()
	offers := make([]vast.Offer, 64)
	for i := range offers {
		offers[i] = base[i%len(base)]
		offers[i].ID += int64(i)
		offers[i].Geolocation = fmt.Sprintf("Region %d, XX", i)
	}
	b.Run("table", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.setOffers(offers)
		}
	})
	b.Run("table+render", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.setOffers(offers)
			win.Canvas().Capture()
		}
	})
}
