package generate

import (
	"context"
	"fmt"
	"image"
	"os"
	"slices"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/app/jobs"
	"github.com/pixery/pixery/engine/api"
)

// queueThumb is the size of a queue entry's preview or result image.
const queueThumb = 96

// queueState connects the job queue's notifications to the rows.
type queueState struct {
	// mu guards pending, order and scheduled, which the queue's goroutine
	// fills: the latest snapshot of each job changed since the last flush.
	// Many changes between two frames cost one update of each row.
	mu        sync.Mutex
	pending   map[string]jobs.Job
	order     []string
	scheduled bool

	// The rest belongs to the UI goroutine.
	rows map[string]*QueueRow
	// notified counts each job's images already passed to OnImages.
	notified map[string]int
	// removed are the jobs taken off the list; late notifications of them
	// are ignored.
	removed map[string]bool
}

// QueueRow is one job in the queue list.
type QueueRow struct {
	// Thumb shows the live preview while the job runs, then its first
	// image.
	Thumb *canvas.Image
	// Prompt is an excerpt of the job's prompt; State where the job is
	// ("queued · 2 ahead", "step 5/28", "done"); Progress its steps.
	Prompt, State *widget.Label
	Progress      *widget.ProgressBar
	// Problem says what is wrong: the connection, or why the job failed.
	Problem *widget.Label
	// Cancel stops a queued or running job; Remove drops a finished one
	// from the list.
	Cancel, Remove *widget.Button

	// Job is the snapshot the row shows.
	Job jobs.Job

	box     *fyne.Container
	preview image.Image
	result  image.Image
	loading bool
}

func (v *View) buildQueue() {
	v.Queue = container.NewVBox()
	v.queue.rows = map[string]*QueueRow{}
	v.queue.notified = map[string]int{}
	v.queue.removed = map[string]bool{}
	v.ClearFinished = widget.NewButtonWithIcon("Clear finished", theme.ContentClearIcon(), v.clearFinished)
	q := v.d.Queue
	if q == nil {
		return
	}
	v.unsub = q.Subscribe(v.jobChanged)
	for _, j := range q.Jobs() {
		// Images saved before this view existed are in the gallery already.
		v.queue.notified[j.ID] = len(j.Images)
		v.showJob(j)
	}
}

// jobChanged receives the queue's notifications (on its goroutine) and
// schedules one update of the rows for all changes until it runs.
func (v *View) jobChanged(j jobs.Job) {
	qs := &v.queue
	qs.mu.Lock()
	if qs.pending == nil {
		qs.pending = map[string]jobs.Job{}
	}
	if _, ok := qs.pending[j.ID]; !ok {
		qs.order = append(qs.order, j.ID)
	}
	qs.pending[j.ID] = j
	schedule := !qs.scheduled
	qs.scheduled = true
	qs.mu.Unlock()
	if schedule {
		v.do(v.flushJobs)
	}
}

// flushJobs applies the pending snapshots to their rows.
func (v *View) flushJobs() {
	qs := &v.queue
	qs.mu.Lock()
	pending, order := qs.pending, qs.order
	qs.pending, qs.order, qs.scheduled = nil, nil, false
	qs.mu.Unlock()
	for _, id := range order {
		v.showJob(pending[id])
	}
}

// QueueRow returns the row of a job, nil when it is not listed.
func (v *View) QueueRow(id string) *QueueRow { return v.queue.rows[id] }

// showJob updates (or adds) the row of a job and hands newly saved images
// to OnImages.
func (v *View) showJob(j jobs.Job) {
	if v.queue.removed[j.ID] {
		return
	}
	r := v.queue.rows[j.ID]
	if r == nil {
		r = v.newQueueRow(j.ID)
		v.queue.rows[j.ID] = r
		// Newest first.
		v.Queue.Objects = slices.Insert(v.Queue.Objects, 0, fyne.CanvasObject(r.box))
		v.Queue.Refresh()
	}
	wasDone := r.Job.State == api.StateDone
	r.update(j)
	if j.State == api.StateDone && !wasDone {
		if len(j.Seeds) > 0 {
			v.form.lastSeed = j.Seeds[0]
		} else {
			v.form.lastSeed = j.Request.Seed
		}
		v.form.hasLastSeed = true
		v.ReuseSeed.Enable()
	}
	if n := len(j.Images); n > v.queue.notified[j.ID] {
		items := slices.Clone(j.Images[v.queue.notified[j.ID]:])
		v.queue.notified[j.ID] = n
		if r.result == nil && !r.loading {
			v.loadResult(r, j.Images[0])
		}
		if v.d.OnImages != nil {
			v.d.OnImages(items)
		}
	}
}

func (v *View) newQueueRow(id string) *QueueRow {
	r := &QueueRow{
		Thumb:    canvas.NewImageFromImage(nil),
		Prompt:   widget.NewLabel(""),
		State:    widget.NewLabel(""),
		Progress: widget.NewProgressBar(),
		Problem:  widget.NewLabel(""),
	}
	r.Thumb.FillMode = canvas.ImageFillContain
	r.Thumb.SetMinSize(fyne.NewSize(queueThumb, queueThumb))
	r.Prompt.Truncation = fyne.TextTruncateEllipsis
	r.Prompt.TextStyle = fyne.TextStyle{Bold: true}
	r.Problem.Wrapping = fyne.TextWrapWord
	r.Problem.Hide()
	r.Cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), func() { v.cancelJob(r, id) })
	r.Remove = widget.NewButtonWithIcon("", theme.DeleteIcon(), func() { v.removeJob(id) })
	r.Remove.Hide()
	frame := canvas.NewRectangle(theme.Color(theme.ColorNameInputBackground))
	frame.SetMinSize(fyne.NewSize(queueThumb, queueThumb))
	r.box = container.NewVBox(
		container.NewBorder(nil, nil,
			container.NewStack(frame, r.Thumb),
			container.NewVBox(r.Cancel, r.Remove),
			container.NewVBox(r.Prompt, r.State, r.Progress, r.Problem)),
		widget.NewSeparator(),
	)
	return r
}

// update shows a job's snapshot, changing only what changed.
func (r *QueueRow) update(j jobs.Job) {
	r.Job = j
	setText(r.Prompt, excerpt(j.Request.Prompt, 80))
	setText(r.State, jobStateText(j))
	if j.Final() {
		hide(r.Progress)
		hide(r.Cancel)
		show(r.Remove, j.Unsaved == 0)
	} else {
		show(r.Progress, true)
		var p float64
		if j.Steps > 0 {
			p = float64(j.Step) / float64(j.Steps)
		}
		if r.Progress.Value != p {
			r.Progress.SetValue(p)
		}
		show(r.Cancel, true)
		hide(r.Remove)
	}
	problem, imp := "", widget.WarningImportance
	switch {
	case j.Connection != "":
		problem = "Connection: " + j.Connection
	case j.Err != "" && j.State != api.StateFailed:
		problem, imp = j.Err, widget.DangerImportance
	case j.State == api.StateFailed:
		problem, imp = j.Err, widget.DangerImportance
	}
	if problem != "" {
		if r.Problem.Importance != imp {
			r.Problem.Importance = imp
			r.Problem.Refresh()
		}
		setText(r.Problem, problem)
	}
	show(r.Problem, problem != "")

	img := r.result
	if img == nil && j.Preview != nil {
		img = j.Preview
	}
	if img != nil && img != r.Thumb.Image {
		r.Thumb.Image = img
		r.Thumb.Refresh()
	}
}

// jobStateText says where a job is in a few words.
func jobStateText(j jobs.Job) string {
	switch j.State {
	case api.StateQueued:
		if j.Position > 0 {
			return fmt.Sprintf("queued · %d ahead", j.Position)
		}
		return "queued · next"
	case api.StateLoading:
		if j.Loading != "" {
			return "loading model " + j.Loading + "…"
		}
		return "loading model…"
	case api.StateRunning:
		if j.Steps > 0 && j.Step >= j.Steps {
			return "decoding…"
		}
		if j.Steps > 0 {
			return fmt.Sprintf("step %d/%d", j.Step, j.Steps)
		}
		return "running"
	case api.StateDone:
		s := fmt.Sprintf("done · %d image", len(j.Images))
		if len(j.Images) != 1 {
			s += "s"
		}
		if len(j.Seeds) > 0 {
			s += fmt.Sprintf(" · seed %d", j.Seeds[0])
		}
		return s
	case api.StateFailed:
		return "failed"
	case api.StateCancelled:
		return "cancelled"
	}
	return string(j.State)
}

// loadResult decodes a job's first image into the row's thumbnail, in the
// background.
func (v *View) loadResult(r *QueueRow, it gallery.Item) {
	if it.Path == "" {
		return
	}
	r.loading = true
	go func() {
		thumb, err := decodeThumb(it.Path)
		v.do(func() {
			r.loading = false
			if err != nil {
				return // the gallery shows the image; the row keeps the preview
			}
			r.result = thumb
			r.Thumb.Image = thumb
			r.Thumb.Refresh()
		})
	}()
}

func decodeThumb(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return scaleDown(img, queueThumb), nil
}

// cancelJob asks the queue to cancel a job; the row changes when the
// engine confirms.
func (v *View) cancelJob(r *QueueRow, id string) {
	q := v.d.Queue
	if q == nil {
		return
	}
	r.Cancel.Disable()
	go func() {
		err := q.Cancel(v.ctx, id)
		v.do(func() {
			r.Cancel.Enable()
			if err != nil {
				v.setError(fmt.Errorf("cancel: %w", err))
			}
		})
	}()
}

// removeJob drops a finished job from the list at once and from the queue
// as soon as the queue lets it go (its follower may still be winding down
// just after the final event).
func (v *View) removeJob(id string) {
	q := v.d.Queue
	r := v.queue.rows[id]
	if q == nil || r == nil || !r.Job.Final() || r.Job.Unsaved > 0 {
		return
	}
	v.Queue.Remove(r.box)
	delete(v.queue.rows, id)
	v.queue.removed[id] = true
	q.Remove(id)
	if _, still := q.Get(id); !still {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(v.ctx, removeWait)
		defer cancel()
		q.Wait(ctx, id)
		q.Remove(id)
		if _, still := q.Get(id); still {
			v.do(func() {
				v.setStatus("A finished job could not be removed from the queue; it will be dropped at the next start.")
			})
		}
	}()
}

// removeWait bounds the wait for a finished job's follower to end.
const removeWait = 30 * time.Second

// clearFinished removes every finished job.
func (v *View) clearFinished() {
	for id, r := range v.queue.rows {
		if r.Job.Final() {
			v.removeJob(id)
		}
	}
}

func setText(l *widget.Label, s string) {
	if l.Text != s {
		l.SetText(s)
	}
}

func show(o fyne.CanvasObject, on bool) {
	if on && !o.Visible() {
		o.Show()
	} else if !on && o.Visible() {
		o.Hide()
	}
}

func hide(o fyne.CanvasObject) { show(o, false) }
