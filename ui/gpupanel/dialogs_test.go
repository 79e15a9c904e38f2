package gpupanel

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/remote/sshdtest"
)

func passwordEntry(win fyne.Window) *widget.Entry {
	for _, o := range dialogObjects(win) {
		if e, ok := o.(*widget.Entry); ok && e.Password {
			return e
		}
	}
	return nil
}

type result[T any] struct {
	v   T
	err error
}

func wait[T any](t *testing.T, ch chan result[T]) result[T] {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("no answer")
		return result[T]{}
	}
}

// A wrong passphrase is asked again; the right one is remembered, so the
// next connection does not ask.
func TestDialogsPassphrase(t *testing.T) {
	test.NewTempApp(t)
	win := test.NewTempWindow(t, widget.NewLabel(""))
	d := NewDialogs(win)
	key := sshdtest.NewKey(t, filepath.Join(t.TempDir(), "id_ed25519"), "correct horse")

	ask := func() chan result[[]byte] {
		ch := make(chan result[[]byte], 1)
		go func() {
			p, err := d.Passphrase(key.Path)
			ch <- result[[]byte]{p, err}
		}()
		return ch
	}
	typeAndUnlock := func(s string) string {
		t.Helper()
		var e *widget.Entry
		waitFor(t, "the passphrase dialog", func() bool { e = passwordEntry(win); return e != nil && dialogButton(win, "Unlock") != nil })
		var shown string
		inUI(func() {
			shown = dialogText(win)
			test.Type(e, s)
			test.Tap(dialogButton(win, "Unlock"))
		})
		return shown
	}

	ch := ask()
	if shown := typeAndUnlock("battery staple"); !strings.Contains(shown, key.Path) {
		t.Errorf("the dialog does not name the key:\n%s", shown)
	}
	if shown := typeAndUnlock("correct horse"); !strings.Contains(shown, "does not unlock the key") {
		t.Errorf("a wrong passphrase was not pointed out:\n%s", shown)
	}
	r := wait(t, ch)
	if r.err != nil || string(r.v) != "correct horse" {
		t.Fatalf("Passphrase = %q, %v", r.v, r.err)
	}
	// Remembered: no dialog this time.
	r = wait(t, ask())
	if r.err != nil || string(r.v) != "correct horse" {
		t.Fatalf("second Passphrase = %q, %v", r.v, r.err)
	}
	var overlays int
	inUI(func() { overlays = len(win.Canvas().Overlays().List()) })
	if overlays != 0 {
		t.Errorf("%d dialogs open after a remembered passphrase", overlays)
	}

	// Cancel is an error that names the key.
	ch = ask()
	other := sshdtest.NewKey(t, filepath.Join(t.TempDir(), "id_other"), "x")
	ch2 := make(chan result[[]byte], 1)
	go func() {
		p, err := d.Passphrase(other.Path)
		ch2 <- result[[]byte]{p, err}
	}()
	if r := wait(t, ch); r.err != nil {
		t.Fatalf("remembered passphrase: %v", r.err)
	}
	answer(t, win, "Cancel")
	if r := wait(t, ch2); r.err == nil || !strings.Contains(r.err.Error(), "no passphrase given for "+other.Path) {
		t.Fatalf("cancelled passphrase: %q, %v", r.v, r.err)
	}
}

// One dialog per host key, however many connections ask; a refusal is
// remembered; Close answers what is still open.
func TestDialogsHostKey(t *testing.T) {
	test.NewTempApp(t)
	win := test.NewTempWindow(t, widget.NewLabel(""))
	d := NewDialogs(win)
	key := sshdtest.NewKey(t, filepath.Join(t.TempDir(), "host"), "")
	fp := ssh.FingerprintSHA256(key.Public)

	ask := func(host string) chan result[bool] {
		ch := make(chan result[bool], 1)
		go func() {
			ok, err := d.HostKey(host, key.Public, fp)
			ch <- result[bool]{ok, err}
		}()
		return ch
	}
	a, b := ask("vast-1"), ask("vast-1")
	shown := answer(t, win, "Don't trust")
	if !strings.Contains(shown, "vast-1") || !strings.Contains(shown, fp) || !strings.Contains(shown, "ssh-ed25519") {
		t.Errorf("host key dialog:\n%s", shown)
	}
	for _, ch := range []chan result[bool]{a, b} {
		if r := wait(t, ch); r.v || r.err != nil {
			t.Fatalf("declined key: %v, %v", r.v, r.err)
		}
	}
	var overlays int
	inUI(func() { overlays = len(win.Canvas().Overlays().List()) })
	if overlays != 0 {
		t.Fatalf("%d dialogs for one host key", overlays+1)
	}
	// Asked again (the status poll): refused without a dialog.
	if r := wait(t, ask("vast-1")); r.v || r.err != nil {
		t.Fatalf("declined key asked again: %v, %v", r.v, r.err)
	}
	c := ask("vast-2")
	answer(t, win, "Trust")
	if r := wait(t, c); !r.v || r.err != nil {
		t.Fatalf("trusted key: %v, %v", r.v, r.err)
	}

	open := ask("vast-3")
	waitFor(t, "the dialog", func() bool { return dialogButton(win, "Trust") != nil })
	d.Close()
	if r := wait(t, open); r.v || !errors.Is(r.err, ErrClosed) {
		t.Fatalf("open question after Close: %v, %v", r.v, r.err)
	}
	if r := wait(t, ask("vast-4")); r.v || !errors.Is(r.err, ErrClosed) {
		t.Fatalf("question after Close: %v, %v", r.v, r.err)
	}
}
