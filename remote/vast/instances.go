package vast

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultImage is the Docker image pixery rents: CUDA 12.4 runtime with
// cuDNN 9, what ONNX Runtime's default GPU build needs (shared/reference/
// onnxruntime.md §7). The engine brings its own ONNX Runtime via setup.
const DefaultImage = "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"

// DefaultRuntype asks for direct SSH with Vast's proxy as a fallback. It is
// the string the vast CLI sends for --ssh --direct (§3.2; the truncated
// "direc" is what the CLI sends and what instances echo back).
const DefaultRuntype = "ssh_direc ssh_proxy"

// DefaultOnstart keeps Vast's auto-tmux away from pixery's sessions (§11);
// it is idempotent, so a re-run on restart is harmless.
const DefaultOnstart = "touch ~/.no_auto_tmux"

// EnginePort is the engine's port inside the container, mapped in the
// create request. pixery reaches the engine through the SSH tunnel, not
// through this mapping.
const EnginePort = 8000

// CreateRequest is the body of PUT /api/v0/asks/{id}/ (§3.1).
type CreateRequest struct {
	ClientID      string            `json:"client_id"`
	Image         string            `json:"image"`
	Disk          float64           `json:"disk"`
	Runtype       string            `json:"runtype"`
	Label         string            `json:"label"`
	Env           map[string]string `json:"env"`
	Onstart       string            `json:"onstart"`
	Price         *float64          `json:"price"` // nil = on-demand
	CancelUnavail bool              `json:"cancel_unavail"`
}

// NewCreateRequest returns pixery's create body for a label and disk size.
func NewCreateRequest(label string, diskGB float64) CreateRequest {
	return CreateRequest{
		ClientID: "me",
		Image:    DefaultImage,
		Disk:     diskGB,
		Runtype:  DefaultRuntype,
		Label:    label,
		// -p X:X becomes a key with value "1" (§3.1 env format).
		Env:           map[string]string{fmt.Sprintf("-p %d:%d", EnginePort, EnginePort): "1"},
		Onstart:       DefaultOnstart,
		CancelUnavail: true,
	}
}

// CreateInstance rents offerID. It returns the new instance id. When err is
// not nil but the id is not 0, Vast created the instance anyway (the bid
// quirk, §3.3): the caller owns it and must destroy it.
func (c *Client) CreateInstance(ctx context.Context, offerID int64, req CreateRequest) (int64, error) {
	var out struct {
		Success     bool   `json:"success"`
		NewContract int64  `json:"new_contract"`
		Msg         string `json:"msg"`
		Error       string `json:"error"`
	}
	op := fmt.Sprintf("create instance from offer %d", offerID)
	err := c.do(ctx, request{op: op, method: http.MethodPut, path: idPath("/api/v0/asks/", offerID),
		body: req, retry: c.Retry, no5xx: true}, &out)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.NewContract != 0 {
			return ae.NewContract, err
		}
		return 0, err
	}
	if !out.Success {
		msg := out.Msg
		if msg == "" {
			msg = "success is false"
		}
		return out.NewContract, &APIError{Op: op, Status: http.StatusOK, Code: out.Error, Msg: msg, NewContract: out.NewContract}
	}
	if out.NewContract == 0 {
		return 0, &APIError{Op: op, Status: http.StatusOK, Msg: "answer has no new_contract"}
	}
	return out.NewContract, nil
}

// PortBinding is one Docker port mapping; HostPort is a string (§4.3).
type PortBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

// Ports maps "22/tcp" to its bindings. It decodes the Docker-style object
// and tolerates the int list one OpenAPI fragment documents (§4.3 CONFLICT)
// by ignoring it.
type Ports map[string][]PortBinding

// UnmarshalJSON accepts an object, null, or anything else (ignored).
func (p *Ports) UnmarshalJSON(b []byte) error {
	var m map[string][]PortBinding
	if err := json.Unmarshal(b, &m); err != nil {
		*p = nil
		return nil
	}
	*p = m
	return nil
}

// Instance is the part of an instance record pixery reads (§4.3).
type Instance struct {
	ID             int64   `json:"id"`
	MachineID      int64   `json:"machine_id"`
	Label          string  `json:"label"`
	ActualStatus   string  `json:"actual_status"` // "" while provisioning (null)
	IntendedStatus string  `json:"intended_status"`
	CurState       string  `json:"cur_state"`
	NextState      string  `json:"next_state"`
	StatusMsg      string  `json:"status_msg"`
	ImageUUID      string  `json:"image_uuid"`
	ImageRuntype   string  `json:"image_runtype"`
	GPUName        string  `json:"gpu_name"`
	NumGPUs        int     `json:"num_gpus"`
	GPURAM         float64 `json:"gpu_ram"`
	DiskSpace      float64 `json:"disk_space"`
	DPHTotal       float64 `json:"dph_total"`
	StartDate      float64 `json:"start_date"`
	EndDate        float64 `json:"end_date"`
	SSHHost        string  `json:"ssh_host"`
	SSHPort        int     `json:"ssh_port"`
	SSHIdx         string  `json:"ssh_idx"`
	PublicIPAddr   string  `json:"public_ipaddr"`
	Ports          Ports   `json:"ports"`
	Geolocation    string  `json:"geolocation"`
	Onstart        string  `json:"onstart"`
}

// Started returns start_date as a time (zero when unknown).
func (in *Instance) Started() time.Time {
	if in.StartDate <= 0 {
		return time.Time{}
	}
	sec := int64(in.StartDate)
	return time.Unix(sec, int64((in.StartDate-float64(sec))*1e9))
}

// SSHAddress returns where to SSH in, as the vast CLI's ssh-url picks it
// (§5.2): direct (public IP + the host port mapped to 22) when the instance
// has one, otherwise Vast's proxy. ok is false while neither is known.
func (in *Instance) SSHAddress() (host string, port int, ok bool) {
	if b := in.Ports["22/tcp"]; len(b) > 0 {
		ip := strings.TrimSpace(in.PublicIPAddr)
		p, err := strconv.Atoi(strings.TrimSpace(b[0].HostPort))
		if ip != "" && err == nil && p > 0 {
			return ip, p, true
		}
	}
	if h := strings.TrimSpace(in.SSHHost); h != "" && in.SSHPort > 0 {
		p := in.SSHPort
		if strings.Contains(in.ImageRuntype, "jupyter") {
			p++ // the CLI's rule for Jupyter runtypes (§5.1)
		}
		return h, p, true
	}
	return "", 0, false
}

// Phase classifies an instance while pixery waits for it (§4.4).
type Phase int

const (
	// Starting: provisioning, created or loading; keep waiting.
	Starting Phase = iota
	// Running: the container runs.
	Running
	// Failed: it will never reach running; destroy it.
	Failed
)

// Phase tells where the instance is and, for Failed, why.
func (in *Instance) Phase() (Phase, string) {
	switch in.ActualStatus {
	case "running":
		return Running, ""
	case "exited", "unknown", "offline":
		return Failed, fmt.Sprintf("instance is %s: %s", in.ActualStatus, orNone(in.StatusMsg))
	}
	if strings.Contains(in.StatusMsg, ": OCI runtime create failed:") {
		return Failed, "container could not be created: " + in.StatusMsg
	}
	if in.CurState == "stopped" && in.IntendedStatus == "stopped" && in.NextState == "stopped" {
		return Failed, "instance was stopped by Vast (outbid or the machine could not start it): " + orNone(in.StatusMsg)
	}
	return Starting, ""
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "no status message"
	}
	return strings.TrimSpace(s)
}

// ShowInstance runs GET /api/v0/instances/{id}/ (§4.1). A destroyed or
// unknown instance ({"instances": null} or 404) gives ErrNotFound.
func (c *Client) ShowInstance(ctx context.Context, id int64) (*Instance, error) {
	var out struct {
		Instances *Instance `json:"instances"`
	}
	op := fmt.Sprintf("show instance %d", id)
	err := c.do(ctx, request{op: op, method: http.MethodGet, path: idPath("/api/v0/instances/", id),
		query: url.Values{"owner": {"me"}}, retry: c.Retry}, &out)
	if err != nil {
		return nil, err
	}
	if out.Instances == nil {
		return nil, fmt.Errorf("vast: %s: %w", op, ErrNotFound)
	}
	return out.Instances, nil
}

// ListInstances returns every instance of the account through the paged
// v1 route (§4.2). filters is a select_filters object such as
// {"label": {"eq": "pixery-7f3c"}}; nil lists all.
func (c *Client) ListInstances(ctx context.Context, filters map[string]any) ([]Instance, error) {
	var all []Instance
	token := ""
	for page := 0; page < 1000; page++ {
		q := url.Values{"limit": {"25"}}
		if filters != nil {
			b, err := json.Marshal(filters)
			if err != nil {
				return nil, fmt.Errorf("vast: list instances: encode filters: %w", err)
			}
			q.Set("select_filters", string(b))
		}
		if token != "" {
			q.Set("after_token", token)
		}
		var out struct {
			Instances []Instance `json:"instances"`
			NextToken *string    `json:"next_token"`
		}
		if err := c.do(ctx, request{op: "list instances", method: http.MethodGet, path: "/api/v1/instances/",
			query: q, retry: c.Retry}, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Instances...)
		if out.NextToken == nil || *out.NextToken == "" || len(out.Instances) == 0 {
			return all, nil
		}
		token = *out.NextToken
	}
	return nil, errors.New("vast: list instances: more than 1000 pages")
}

// DestroyInstance runs DELETE /api/v0/instances/{id}/ (§7). An instance that
// is already gone counts as destroyed (nil error). It retries rate limits
// and gateway errors with DestroyRetry, since it is what stops billing.
func (c *Client) DestroyInstance(ctx context.Context, id int64) error {
	var out struct {
		Success *bool  `json:"success"`
		Error   string `json:"error"`
		Msg     string `json:"msg"`
	}
	op := fmt.Sprintf("destroy instance %d", id)
	err := c.do(ctx, request{op: op, method: http.MethodDelete, path: idPath("/api/v0/instances/", id),
		body: struct{}{}, retry: c.DestroyRetry}, &out)
	if err != nil {
		if alreadyGone(err) {
			return nil
		}
		return err
	}
	if out.Success != nil && !*out.Success {
		e := &APIError{Op: op, Status: http.StatusOK, Code: out.Error, Msg: out.Msg}
		if alreadyGone(e) {
			return nil
		}
		return e
	}
	return nil
}

// alreadyGone: 404 not_found / no_such_instance, or an error code saying so
// (§7: dstack treats no_such_instance as success; OpenAPI says not_found).
func alreadyGone(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || isAuthFailure(ae.Status, ae.Msg) {
		return false
	}
	if ae.Code == "no_such_instance" || ae.Code == "not_found" {
		return true
	}
	return ae.Status == http.StatusNotFound
}

// SetState starts ("running") or stops ("stopped") an instance (§7).
func (c *Client) SetState(ctx context.Context, id int64, state string) error {
	return c.do(ctx, request{op: fmt.Sprintf("set instance %d %s", id, state), method: http.MethodPut,
		path: idPath("/api/v0/instances/", id), body: map[string]string{"state": state}, retry: c.Retry}, nil)
}
