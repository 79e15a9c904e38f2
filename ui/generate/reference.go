package generate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	_ "image/jpeg" // reference images may be JPEG
	_ "image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // and WebP

	"github.com/pixery/pixery/engine/api"
)

// DefaultReferenceScale is the IP-Adapter weight a new form starts with.
const DefaultReferenceScale = 0.6

// thumbSide is the longest side of the thumbnails the view shows.
const thumbSide = 160

const referenceHint = "Drop a PNG, JPEG or WebP image here, or choose a file"

// reference is the IP-Adapter reference image.
type reference struct {
	// data is the image file as it is sent; nil for none.
	data []byte
	// path is its file, when it came from one; name what the user sees.
	path, name string
	sha256     string
	// gen counts the images set, so a late thumbnail of a replaced image
	// is dropped.
	gen int
}

func (v *View) buildReference() {
	v.Reference = canvas.NewImageFromImage(nil)
	v.Reference.FillMode = canvas.ImageFillContain
	// Always the same size, image or not, so nothing moves when one is
	// set, and the drop area is easy to hit.
	v.Reference.SetMinSize(fyne.NewSize(thumbSide, thumbSide))
	v.ReferenceLabel = widget.NewLabel(referenceHint)
	v.ReferenceLabel.Alignment = fyne.TextAlignCenter
	v.ReferenceLabel.Wrapping = fyne.TextWrapWord
	frame := canvas.NewRectangle(theme.Color(theme.ColorNameInputBackground))
	frame.StrokeColor = theme.Color(theme.ColorNameInputBorder)
	frame.StrokeWidth = 2
	frame.CornerRadius = theme.InputRadiusSize()
	v.ReferenceArea = container.NewStack(frame,
		container.NewPadded(container.NewBorder(nil, v.ReferenceLabel, nil, nil, container.NewCenter(v.Reference))))

	v.ReferenceValue = widget.NewLabel("")
	v.ReferenceScale = widget.NewSlider(0, 1)
	v.ReferenceScale.Step = 0.05
	v.ReferenceScale.OnChanged = func(f float64) {
		v.ReferenceValue.SetText(strconv.FormatFloat(roundScale(f), 'f', 2, 64))
	}
	v.ReferenceScale.SetValue(DefaultReferenceScale)
	v.PickReference = widget.NewButtonWithIcon("Choose image…", theme.FolderOpenIcon(), v.pickReference)
	v.RemoveReference = widget.NewButtonWithIcon("Remove", theme.DeleteIcon(), v.removeReference)
	v.RemoveReference.Disable()
	v.Adapter = widget.NewSelect(nil, nil)
	v.Adapter.PlaceHolder = "(engine's default adapter)"
	v.Adapter.Hide()
}

// SetReference makes the image file at path the IP-Adapter reference. A
// file that is not a PNG, JPEG or WebP image of acceptable size is an error
// and changes nothing.
func (v *View) SetReference(path string) error {
	data, err := readImageFile(path)
	if err != nil {
		return err
	}
	return v.setReferenceData(filepath.Base(path), path, data)
}

// readImageFile reads a file of at most api.MaxIPImageBytes.
func readImageFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reference image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reference image %s: %w", filepath.Base(path), err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("reference image %s: is a folder, not an image file", filepath.Base(path))
	}
	return readLimited(f, filepath.Base(path))
}

func readLimited(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, api.MaxIPImageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reference image %s: %w", name, err)
	}
	if len(data) > api.MaxIPImageBytes {
		return nil, fmt.Errorf("reference image %s is larger than %d MiB", name, api.MaxIPImageBytes>>20)
	}
	return data, nil
}

// setReferenceData checks an image file's header and makes it the
// reference; the thumbnail is decoded in the background (a file whose data
// turns out corrupt is then dropped again, with a message).
func (v *View) setReferenceData(name, path string, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("reference image %s is empty", name)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("reference image %s is not a PNG, JPEG or WebP image (%v)", name, err)
	}
	if _, err := api.CheckImage(data); err != nil {
		return fmt.Errorf("reference image %s: %w", name, err)
	}
	sum := sha256.Sum256(data)
	v.ref = reference{data: data, path: path, name: name, sha256: hex.EncodeToString(sum[:]), gen: v.ref.gen + 1}
	v.ReferenceLabel.SetText(fmt.Sprintf("%s — %d×%d %s", name, cfg.Width, cfg.Height, strings.ToUpper(format)))
	v.RemoveReference.Enable()
	gen := v.ref.gen
	go func() {
		img, _, err := image.Decode(bytes.NewReader(data))
		var thumb image.Image
		if err == nil {
			thumb = scaleDown(img, thumbSide)
		}
		v.do(func() {
			if v.ref.gen != gen {
				return // replaced meanwhile
			}
			if err != nil {
				v.removeReference()
				v.setError(fmt.Errorf("reference image %s is damaged and was not used: %w", name, err))
				return
			}
			v.Reference.Image = thumb
			v.Reference.Refresh()
		})
	}()
	return nil
}

// removeReference drops the reference image.
func (v *View) removeReference() {
	v.ref = reference{gen: v.ref.gen + 1}
	v.Reference.Image = nil
	v.Reference.Refresh()
	v.ReferenceLabel.SetText(referenceHint)
	v.RemoveReference.Disable()
}

// pickReference opens a file dialog for the reference image.
func (v *View) pickReference() {
	if v.d.Window == nil {
		return
	}
	d := dialog.NewFileOpen(func(rc fyne.URIReadCloser, err error) {
		if err != nil {
			v.setError(fmt.Errorf("choose reference image: %w", err))
			return
		}
		if rc == nil {
			return // cancelled
		}
		uri := rc.URI()
		go func() {
			defer rc.Close()
			data, err := readLimited(rc, uri.Name())
			v.do(func() {
				if err == nil {
					path := ""
					if uri.Scheme() == "file" {
						path = uri.Path()
					}
					err = v.setReferenceData(uri.Name(), path, data)
				}
				if err != nil {
					v.setError(err)
				} else {
					v.setStatus("Reference image: %s.", uri.Name())
				}
			})
		}()
	}, v.d.Window)
	d.SetFilter(storage.NewExtensionFileFilter([]string{".png", ".jpg", ".jpeg", ".webp", ".PNG", ".JPG", ".JPEG", ".WEBP"}))
	d.Show()
}

// DropTarget is the reference area, where the window's file drops are
// meant for this view.
func (v *View) DropTarget() fyne.CanvasObject { return v.ReferenceArea }

// HandleDrop takes files dropped on the window at pos (canvas coordinates):
// when pos is on the reference area, the first file becomes the reference
// image and HandleDrop returns true, also when the file is refused (the
// reason shows in Status). Drops elsewhere return false, for other views.
func (v *View) HandleDrop(pos fyne.Position, uris []fyne.URI) bool {
	if len(uris) == 0 || !v.onScreenAt(v.ReferenceArea, pos) {
		return false
	}
	uri := uris[0]
	var err error
	if uri.Scheme() != "file" {
		err = fmt.Errorf("%s is not a local file; save it first, then drop the file", uri.String())
	} else {
		err = v.SetReference(uri.Path())
	}
	switch {
	case err != nil:
		v.setError(fmt.Errorf("Not used as reference: %w", err))
	case len(uris) > 1:
		v.setStatus("Reference image: %s (one image is used; %d others were ignored).", uri.Name(), len(uris)-1)
	default:
		v.setStatus("Reference image: %s.", uri.Name())
	}
	return true
}

// onScreenAt reports whether pos falls on o where it is visible: inside its
// rectangle and inside the form's scrolled viewport.
func (v *View) onScreenAt(o fyne.CanvasObject, pos fyne.Position) bool {
	app := fyne.CurrentApp()
	if app == nil || !o.Visible() {
		return false
	}
	d := app.Driver()
	if !inside(d.AbsolutePositionForObject(o), o.Size(), pos) {
		return false
	}
	if s := v.comp.scroll; s != nil {
		return inside(d.AbsolutePositionForObject(s), s.Size(), pos)
	}
	return true
}

func inside(p fyne.Position, s fyne.Size, pos fyne.Position) bool {
	return pos.X >= p.X && pos.Y >= p.Y && pos.X < p.X+s.Width && pos.Y < p.Y+s.Height
}

// scaleDown returns img scaled so that its longer side is at most side.
func scaleDown(img image.Image, side int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= side && h <= side {
		return img
	}
	if w >= h {
		w, h = side, max(1, h*side/w)
	} else {
		w, h = max(1, w*side/h), side
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	return dst
}
