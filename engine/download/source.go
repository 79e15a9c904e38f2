package download

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Source kinds.
const (
	KindHuggingFace = "huggingface"
	KindCivitai     = "civitai"
	KindURL         = "https"
)

// Source is a parsed model source.
type Source struct {
	Kind string
	// Owner and Repo name a Hugging Face repository (KindHuggingFace).
	Owner, Repo string
	// VersionID is a Civitai model version id (KindCivitai).
	VersionID string
	// URL is the address of a KindURL source.
	URL string
}

var (
	hfNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$`)
	civitaiIDRE = regexp.MustCompile(`^[0-9]{1,12}$`)
)

// sourceForms is how errors tell users what a source may look like.
const sourceForms = "huggingface:owner/repo, civitai:<version id> or https://…"

// ParseSource parses "huggingface:owner/repo", "civitai:<version id>" or an
// https URL, the three forms a registry entry's source may take.
func ParseSource(s string) (Source, error) {
	switch {
	case strings.HasPrefix(s, "huggingface:"):
		rest := strings.TrimPrefix(s, "huggingface:")
		owner, repo, ok := strings.Cut(rest, "/")
		if !ok || !hfNameRE.MatchString(owner) || !hfNameRE.MatchString(repo) || strings.Contains(rest, "..") {
			return Source{}, fmt.Errorf("%q is not huggingface:owner/repo (letters, digits, '.', '_', '-')", s)
		}
		return Source{Kind: KindHuggingFace, Owner: owner, Repo: repo}, nil
	case strings.HasPrefix(s, "civitai:"):
		id := strings.TrimPrefix(s, "civitai:")
		if !civitaiIDRE.MatchString(id) {
			return Source{}, fmt.Errorf("%q is not civitai:<version id> (the number after modelVersionId= on the model page)", s)
		}
		return Source{Kind: KindCivitai, VersionID: id}, nil
	case strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		if err != nil {
			return Source{}, fmt.Errorf("%q is not a valid URL: %w", redact(s), unwrapURLError(err))
		}
		if u.Host == "" {
			return Source{}, fmt.Errorf("%q has no host", redact(s))
		}
		if u.User != nil {
			return Source{}, fmt.Errorf("%q carries credentials; put tokens in HF_TOKEN / CIVITAI_TOKEN, never in a URL", redact(s))
		}
		return Source{Kind: KindURL, URL: s}, nil
	case strings.HasPrefix(s, "http://"):
		return Source{}, fmt.Errorf("%q uses plain http; model files are only fetched over https", redact(s))
	}
	return Source{}, fmt.Errorf("%q is not a model source: use %s", redact(s), sourceForms)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact drops the user info and query of a URL for messages, since either
// may hold a secret someone pasted; other strings pass unchanged.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			return s[:i] + "?…"
		}
		return s
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = ""
		u.ForceQuery = false
		return u.String() + "?…"
	}
	u.Fragment = ""
	return u.String()
}

// checkRepoPath validates the path of a file inside a Hugging Face repo
// ("model.safetensors", "sdxl_models/ip-adapter_sdxl.safetensors").
func checkRepoPath(p string) error {
	if p == "" {
		return errors.New("no file name given for the Hugging Face repository")
	}
	if strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\?#") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%q is not a file path inside a repository", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q is not a file path inside a repository", p)
		}
	}
	return nil
}

// escapePath escapes each segment of a slash-separated path for a URL.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
