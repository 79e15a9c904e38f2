package deploy

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/pixery/pixery/engine/registry"
)

// ErrNotEngineBinary means the file given as the engine cannot run on a
// linux/amd64 host.
var ErrNotEngineBinary = errors.New("not a linux/amd64 executable")

// CheckEngineBinary makes sure path is an ELF x86-64 executable for Linux
// before anything is uploaded, and says what it is otherwise.
func CheckEngineBinary(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("engine binary: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return fmt.Errorf("engine binary %s: %w: file is too short (%v)", path, ErrNotEngineBinary, err)
	}
	if !bytes.Equal(magic[:], []byte(elf.ELFMAG)) {
		what := "not an ELF file"
		switch {
		case magic[0] == 'M' && magic[1] == 'Z':
			what = "a Windows executable"
		case bytes.Equal(magic[:], []byte{0xcf, 0xfa, 0xed, 0xfe}), bytes.Equal(magic[:], []byte{0xce, 0xfa, 0xed, 0xfe}),
			bytes.Equal(magic[:], []byte{0xca, 0xfe, 0xba, 0xbe}):
			what = "a macOS executable"
		case magic[0] == '#' && magic[1] == '!':
			what = "a script"
		}
		return fmt.Errorf("engine binary %s: %w: it is %s; build it with GOOS=linux GOARCH=amd64 go build ./engine/cmd/pixery-engine", path, ErrNotEngineBinary, what)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("engine binary %s: %w: damaged ELF file: %v", path, ErrNotEngineBinary, err)
	}
	defer ef.Close()
	if ef.Class != elf.ELFCLASS64 || ef.Machine != elf.EM_X86_64 {
		return fmt.Errorf("engine binary %s: %w: it is built for %s (%s); the host needs x86-64 (GOARCH=amd64)", path, ErrNotEngineBinary, archName(ef.Machine), ef.Class)
	}
	if ef.OSABI != elf.ELFOSABI_NONE && ef.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("engine binary %s: %w: it is built for %s, not Linux (GOOS=linux)", path, ErrNotEngineBinary, ef.OSABI)
	}
	switch {
	case ef.Type == elf.ET_EXEC:
	case ef.Type == elf.ET_DYN && ef.Entry != 0: // position-independent executable
	default:
		return fmt.Errorf("engine binary %s: %w: it is an ELF %s, not an executable", path, ErrNotEngineBinary, ef.Type)
	}
	return nil
}

func archName(m elf.Machine) string {
	switch m {
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_386:
		return "386"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_RISCV:
		return "riscv"
	}
	return m.String()
}

// RegistryFile is one model registry TOML to upload.
type RegistryFile struct {
	Name string // base name, e.g. pony.toml
	Data []byte
}

// LoadRegistry reads every *.toml directly in dir of fsys and checks it
// with engine/registry before anything is uploaded: a file that does not
// parse or validate stops the deploy with the file, line and reason.
func LoadRegistry(fsys fs.FS, dir string) ([]RegistryFile, error) {
	_, problems := registry.Load(fsys, dir)
	var errs []string
	for _, p := range problems {
		if p.Severity == registry.Error {
			errs = append(errs, p.Error())
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("model registry has errors, nothing was uploaded:\n  %s", strings.Join(errs, "\n  "))
	}
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read registry folder %s: %w", dir, err)
	}
	var out []RegistryFile
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".toml") {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("read registry file %s: %w", n, err)
		}
		out = append(out, RegistryFile{Name: n, Data: b})
	}
	return out, nil
}
