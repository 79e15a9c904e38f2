package sshx

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// hostConfig is what pixery uses from a ~/.ssh/config Host entry.
type hostConfig struct {
	HostName      string
	User          string
	Port          int
	IdentityFiles []string
	HostKeyAlias  string
}

// lookupConfig reads the Host blocks of an OpenSSH client config that
// match host, with OpenSSH's rule that the first value of a keyword wins
// (IdentityFile accumulates). Match blocks are skipped; Include is
// followed (relative to ~/.ssh, globs allowed, three levels deep).
func lookupConfig(file, host string) (hostConfig, error) {
	var hc hostConfig
	if file == "none" {
		return hc, nil
	}
	home, _ := os.UserHomeDir()
	if file == "" {
		if home == "" {
			return hc, nil
		}
		file = filepath.Join(home, ".ssh", "config")
	}
	set := map[string]bool{}
	err := readConfig(file, host, home, &hc, set, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return hostConfig{}, nil
	}
	return hc, err
}

func readConfig(file, host, home string, hc *hostConfig, set map[string]bool, depth int) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	active := true // lines before the first Host apply to all hosts
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, args := splitConfigLine(line)
		if key == "" {
			continue
		}
		switch key {
		case "host":
			active = matchHost(host, args)
			continue
		case "match":
			active = false
			continue
		}
		if !active {
			continue
		}
		if len(args) == 0 {
			return fmt.Errorf("%s:%d: %s without a value", file, n, key)
		}
		val := args[0]
		switch key {
		case "include":
			if depth >= 3 {
				continue
			}
			for _, pat := range args {
				pat = expandTilde(pat, home)
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(home, ".ssh", pat)
				}
				matches, _ := filepath.Glob(pat)
				for _, m := range matches {
					if err := readConfig(m, host, home, hc, set, depth+1); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return err
					}
				}
			}
		case "identityfile":
			hc.IdentityFiles = append(hc.IdentityFiles, expandTokens(val, home, host))
		case "hostname", "user", "port", "hostkeyalias":
			if set[key] {
				continue
			}
			set[key] = true
			switch key {
			case "hostname":
				hc.HostName = expandTokens(val, home, host)
			case "user":
				hc.User = val
			case "port":
				p, err := strconv.Atoi(val)
				if err != nil || p < 1 || p > 65535 {
					return fmt.Errorf("%s:%d: bad Port %q", file, n, val)
				}
				hc.Port = p
			case "hostkeyalias":
				hc.HostKeyAlias = val
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

// splitConfigLine splits "Key value", "Key=value" and quoted values.
func splitConfigLine(line string) (string, []string) {
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return strings.ToLower(line), nil
	}
	key := strings.ToLower(line[:i])
	rest := strings.TrimLeft(line[i:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	var args []string
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		if rest[0] == '"' {
			j := strings.IndexByte(rest[1:], '"')
			if j < 0 {
				args = append(args, rest[1:])
				break
			}
			args = append(args, rest[1:j+1])
			rest = rest[j+2:]
			continue
		}
		j := strings.IndexAny(rest, " \t")
		if j < 0 {
			args = append(args, rest)
			break
		}
		args = append(args, rest[:j])
		rest = rest[j:]
	}
	return key, args
}

// matchHost applies a Host line's patterns: any positive match and no
// negated match.
func matchHost(host string, patterns []string) bool {
	matched := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		ok, err := path.Match(strings.ToLower(p), strings.ToLower(host))
		if err != nil || !ok {
			continue
		}
		if neg {
			return false
		}
		matched = true
	}
	return matched
}

func expandTilde(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

// expandTokens handles ~ and the tokens %d (home), %u (local user), %h
// (host) and %%.
func expandTokens(p, home, host string) string {
	p = expandTilde(p, home)
	if !strings.Contains(p, "%") {
		return p
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	r := strings.NewReplacer("%%", "%", "%d", home, "%u", local, "%h", host)
	return r.Replace(p)
}
