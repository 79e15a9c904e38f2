package gpupanel

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"
	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/remote"
)

// ErrClosed answers the SSH questions still open when the panel closes.
var ErrClosed = errors.New("pixery's GPU panel was closed")

// Dialogs asks the SSH questions of remote.Manager — trust a host key seen
// for the first time, the passphrase of an encrypted key — in dialogs over
// a window, where the CLI asks on the terminal. The Manager calls them
// from its own goroutines; each call waits for the user's answer.
//
// Make one before the Manager and put it in its Config (Configure), then
// hand it to the panel in Deps.Dialogs so that closing the panel answers
// what is still open.
type Dialogs struct {
	w fyne.Window

	mu       sync.Mutex
	closed   bool
	done     chan struct{}
	pending  map[string]*question // host key questions on screen, by host+fingerprint
	declined map[string]bool      // host keys the user refused in this session
	phrases  map[string][]byte    // key file → passphrase that decrypts it
}

type question struct {
	done chan struct{}
	ok   bool
	err  error
}

// NewDialogs makes the prompts over w.
func NewDialogs(w fyne.Window) *Dialogs {
	return &Dialogs{w: w, done: make(chan struct{}), pending: map[string]*question{},
		declined: map[string]bool{}, phrases: map[string][]byte{}}
}

// Configure makes cfg's SSH ask through these dialogs.
func (d *Dialogs) Configure(cfg *remote.Config) {
	cfg.SSH.ConfirmHostKey = d.HostKey
	cfg.SSH.Passphrase = d.Passphrase
}

// Close answers every open question with a refusal and every later one at
// once; the goroutines waiting for answers go on (and fail cleanly).
func (d *Dialogs) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.closed = true
		close(d.done)
	}
}

// HostKey is the trust-on-first-use question (an sshx.HostKeyPrompt).
// The same host and key asked again while the dialog is open waits for
// that dialog; a key the user refused is refused again without asking, so
// that status polling does not nag.
func (d *Dialogs) HostKey(host string, key ssh.PublicKey, fingerprint string) (bool, error) {
	id := host + " " + fingerprint
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false, ErrClosed
	}
	if d.declined[id] {
		d.mu.Unlock()
		return false, nil
	}
	q, asking := d.pending[id]
	if !asking {
		q = &question{done: make(chan struct{})}
		d.pending[id] = q
	}
	d.mu.Unlock()

	if !asking {
		answer := func(ok bool) {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.pending[id] != q {
				return // already answered
			}
			delete(d.pending, id)
			q.ok = ok
			if !ok {
				d.declined[id] = true
			}
			close(q.done)
		}
		msg := widget.NewLabel(fmt.Sprintf("pixery connects to %s for the first time.\n\nIts %s host key fingerprint is\n%s\n\n"+
			"Trust this key and remember it in pixery's known hosts?\n(Refuse if you did not expect a new host.)", host, key.Type(), fingerprint))
		msg.Wrapping = fyne.TextWrapWord
		runUI(func() {
			dlg := dialog.NewCustomConfirm("New SSH host", "Trust", "Don't trust", msg, answer, d.w)
			dlg.Resize(fyne.NewSize(520, 300))
			dlg.Show()
		})
	}
	select {
	case <-q.done:
		return q.ok, q.err
	case <-d.done:
		return false, ErrClosed
	}
}

// Passphrase asks for the passphrase of an encrypted key file (an
// sshx.PassphrasePrompt). It checks the answer against the file before
// returning it — a wrong one is asked again, up to three times — and
// remembers it for this session, since the panel connects again and again
// (status, tunnel reconnects) and must not ask each time.
func (d *Dialogs) Passphrase(file string) ([]byte, error) {
	pem, readErr := os.ReadFile(file)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrClosed
	}
	if p, ok := d.phrases[file]; ok {
		if readErr == nil && decrypts(pem, p) {
			d.mu.Unlock()
			return p, nil
		}
		delete(d.phrases, file)
	}
	d.mu.Unlock()

	hint := ""
	for try := 1; try <= 3; try++ {
		p, err := d.askPassphrase(file, hint)
		if err != nil {
			return nil, err
		}
		if readErr != nil {
			// Cannot check it here; ssh will say whether it works.
			return p, nil
		}
		if decrypts(pem, p) {
			d.mu.Lock()
			d.phrases[file] = p
			d.mu.Unlock()
			return p, nil
		}
		hint = "That passphrase does not unlock the key; try again."
	}
	return nil, fmt.Errorf("wrong passphrase for %s (3 tries)", file)
}

func decrypts(pem, pass []byte) bool {
	_, err := ssh.ParseRawPrivateKeyWithPassphrase(pem, pass)
	return err == nil
}

func (d *Dialogs) askPassphrase(file, hint string) ([]byte, error) {
	type answer struct {
		p  []byte
		ok bool
	}
	ch := make(chan answer, 1)
	runUI(func() {
		entry := widget.NewPasswordEntry()
		entry.SetPlaceHolder("passphrase")
		text := fmt.Sprintf("The SSH key %s is encrypted.\nEnter its passphrase to connect (kept in memory until pixery quits).", file)
		if hint != "" {
			text = hint + "\n\n" + text
		}
		msg := widget.NewLabel(text)
		msg.Wrapping = fyne.TextWrapWord
		var dlg *dialog.ConfirmDialog
		dlg = dialog.NewCustomConfirm("SSH key passphrase", "Unlock", "Cancel", container.NewVBox(msg, entry), func(ok bool) {
			ch <- answer{[]byte(entry.Text), ok}
		}, d.w)
		entry.OnSubmitted = func(string) { dlg.Confirm() }
		dlg.Resize(fyne.NewSize(520, 240))
		dlg.Show()
		d.w.Canvas().Focus(entry)
	})
	select {
	case a := <-ch:
		if !a.ok {
			return nil, fmt.Errorf("no passphrase given for %s", file)
		}
		if len(a.p) == 0 {
			return nil, fmt.Errorf("empty passphrase for %s", file)
		}
		return a.p, nil
	case <-d.done:
		return nil, ErrClosed
	}
}
