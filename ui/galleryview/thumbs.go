package galleryview

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"strconv"

	"github.com/pixery/pixery/app/gallery"
)

// maxDetailPixels bounds the images the detail panel decodes (a 64 MP
// image is already 256 MB of RGBA).
const maxDetailPixels = 64 << 20

// thumbEntry is a decoded thumbnail, or why there is none.
type thumbEntry struct {
	img image.Image
	err error
}

// lru keeps the most recently used thumbnails; guarded by View.mu.
type lru struct {
	cap   int
	order *list.List // front: most recent; values are *lruItem
	items map[string]*list.Element
}

type lruItem struct {
	key string
	e   thumbEntry
}

func newLRU(capacity int) *lru {
	return &lru{cap: capacity, order: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(key string) (thumbEntry, bool) {
	el, ok := c.items[key]
	if !ok {
		return thumbEntry{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruItem).e, true
}

func (c *lru) put(key string, e thumbEntry) {
	if el, ok := c.items[key]; ok {
		el.Value.(*lruItem).e = e
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&lruItem{key, e})
	for c.order.Len() > c.cap {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruItem).key)
	}
}

func (c *lru) len() int { return c.order.Len() }

// dropFailures forgets the thumbnails that could not be made, so that they
// are tried again (the file may have been fixed).
func (c *lru) dropFailures() {
	for key, el := range c.items {
		if el.Value.(*lruItem).e.err != nil {
			c.order.Remove(el)
			delete(c.items, key)
		}
	}
}

// thumbKey names an image's thumbnail in the cache: a file changed in place
// keeps its ID but gets a new key.
func thumbKey(it gallery.Item) string {
	return it.ID + "\x00" + strconv.FormatInt(it.ModTime.UnixNano(), 10)
}

type thumbJob struct {
	id, key string
}

// wantThumbLocked asks the workers for a thumbnail; c shows it when it
// comes, if c still shows that image then.
func (v *View) wantThumbLocked(id, key string, c *cell) {
	if !addWaiter(v.thumbWait, key, c) {
		return
	}
	v.thumbStack = append(v.thumbStack, thumbJob{id, key})
	if v.thumbRunning < thumbWorkers {
		v.thumbRunning++
		v.start(v.thumbWorker)
	}
}

// thumbWorker makes and decodes thumbnails, the latest asked for first (the
// ones on screen after a scroll), skipping those no cell shows any more.
func (v *View) thumbWorker() {
	for {
		v.mu.Lock()
		var job thumbJob
		found := false
		for len(v.thumbStack) > 0 && !found {
			job = v.thumbStack[len(v.thumbStack)-1]
			v.thumbStack = v.thumbStack[:len(v.thumbStack)-1]
			for _, c := range v.thumbWait[job.key] {
				if c.key == job.key {
					found = true
					break
				}
			}
			if !found {
				delete(v.thumbWait, job.key)
			}
		}
		if !found {
			v.thumbRunning--
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()

		img, err := v.loadThumb(job.id)
		if v.ctx.Err() != nil {
			return
		}
		v.mu.Lock()
		v.thumbs.put(job.key, thumbEntry{img, err})
		cells := v.thumbWait[job.key]
		delete(v.thumbWait, job.key)
		v.mu.Unlock()
		v.ui(func() {
			for _, c := range cells {
				v.mu.Lock()
				still := c.key == job.key
				v.mu.Unlock()
				if still {
					c.show(c.full, img, err != nil, v.placeholder)
				}
			}
			if err != nil {
				v.Status.SetText(err.Error())
			}
		})
	}
}

// loadThumb returns the decoded thumbnail of an image, making it first if
// the store has none.
func (v *View) loadThumb(id string) (image.Image, error) {
	p, err := v.d.Store.Thumbnail(v.ctx, id)
	if err != nil {
		return nil, fmt.Errorf("thumbnail of %s: %w", id, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("thumbnail of %s: %w", id, err)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("thumbnail of %s: %w", id, err)
	}
	return img, nil
}

// decodeFull decodes an image file for the detail panel, refusing sizes
// that would exhaust memory before allocating for them.
func decodeFull(path string) (image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("show image: %w", err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("show %s: %w", path, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxDetailPixels {
		return nil, fmt.Errorf("show %s: %d×%d pixels is too large to show", path, cfg.Width, cfg.Height)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("show %s: %w", path, err)
	}
	if img == nil {
		return nil, errors.New("show " + path + ": no image")
	}
	return img, nil
}
