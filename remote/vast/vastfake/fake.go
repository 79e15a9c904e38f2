// Package vastfake is an in-process stand-in for the Vast.ai API, for tests.
// It follows the "Fake server contract" of shared/reference/vast-api.md §13:
// bearer auth, offer search with filters/order/limit, create with the
// documented failures (offer gone 404/410, bad args, the bid quirk), the
// state walk null → loading → running and its failure variants, destroy
// (already gone → 404 no_such_instance), the paged v1 list, account and
// per-instance SSH keys, and 429s without Retry-After on demand. Its
// instances point at an SSH server the test chooses (a local sshd).
package vastfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pixery/pixery/remote/vast"
)

// CreateFailure selects how the next creates fail.
type CreateFailure int

const (
	CreateOK                 CreateFailure = iota
	CreateOfferGone404                     // 404 invalid_args "no_such_ask … is not available"
	CreateOfferGone410                     // 410 no_such_ask "… is no longer available"
	CreateBadArgs                          // 400 invalid_args
	CreateInsufficientCredit               // 402 insufficient_credit (shape UNCONFIRMED in the reference)
	CreateBidQuirk                         // 200 success:false + new_contract; a stopped instance exists
	CreateLostAnswer                       // the instance is made, but the connection drops before the answer
)

// Walk selects the states new instances go through, one step per poll of
// GET /api/v0/instances/{id}/.
type Walk int

const (
	WalkNormal       Walk = iota // null → loading → running
	WalkExited                   // null → loading → exited
	WalkOCIError                 // null → created with ": OCI runtime create failed:"
	WalkStopped                  // null → cur/intended/next all "stopped"
	WalkStuckLoading             // null → loading forever
	WalkOffline                  // null → loading → offline
)

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Body   []byte
	Auth   string // the Authorization header
}

type instance struct {
	id        int64
	offer     map[string]any
	label     string
	image     string
	runtype   string
	onstart   string
	env       map[string]string
	disk      float64
	walk      Walk
	polls     int
	created   time.Time
	destroyed bool
	bidQuirk  bool
	keys      []string  // account keys at create time
	keysAt    time.Time // when they start to work (Vast installs them while booting)
	attached  []string  // keys attached to this instance; work at once
}

type sshKey struct {
	ID        int64  `json:"id"`
	UserID    int64  `json:"user_id"`
	PublicKey string `json:"public_key"`
	CreatedAt string `json:"created_at"`
	DeletedAt *bool  `json:"deleted_at"`
}

// Server is the fake API. Its methods are safe to call while requests run.
type Server struct {
	// URL is the base URL to give vast.New.
	URL string
	// Key is the only API key accepted.
	Key string

	srv *httptest.Server

	mu             sync.Mutex
	offers         []map[string]any
	rented         map[int64]bool
	instances      map[int64]*instance
	nextID         int64
	nextKeyID      int64
	accountKeys    []sshKey
	sshHost        string
	sshPort        int
	authorizedKeys string
	createFail     CreateFailure
	keyDelay       time.Duration
	walk           Walk
	rateLimit      map[string]int
	show404        bool
	requests       []Request
}

// New starts a fake accepting key, with DefaultOffers.
func New(key string) *Server {
	s := &Server{
		Key:       key,
		rented:    map[int64]bool{},
		instances: map[int64]*instance{},
		nextID:    9120457,
		nextKeyID: 7781,
		rateLimit: map[string]int{},
		sshHost:   "127.0.0.1",
		sshPort:   22,
	}
	s.SetOffers(DefaultOffers())
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// DefaultOffers returns a few offers shaped like §13.2: the contract's
// RTX 4090 example and others that differ in price, GPU, disk, reliability
// and direct ports, so filters and order have something to do.
func DefaultOffers() []vast.Offer {
	base := vast.Offer{
		ID: 24817533, AskContractID: 24817533, MachineID: 31208, HostID: 90211,
		GPUName: "RTX 4090", NumGPUs: 1, GPURAM: 24564, GPUTotalRAM: 24564,
		CPUCores: 32, CPUCoresEffective: 8, CPURAM: 64298, DiskSpace: 412.6,
		DPHBase: 0.34, DPHTotal: 0.3538, MinBid: 0.21, StorageCost: 0.2,
		InetDown: 912.4, InetUp: 804.1, Reliability: 0.9962, Reliability2: 0.9962,
		Geolocation: "Ontario, CA", CUDAMaxGood: 12.4, DriverVersion: "550.107.02",
		DirectPortCount: 98, Verification: "verified", Rentable: true,
		PublicIPAddr: "198.51.100.23", Score: 212.7,
	}
	cheap := base
	cheap.ID, cheap.AskContractID, cheap.MachineID = 24817601, 24817601, 31277
	cheap.DPHTotal, cheap.DPHBase, cheap.Geolocation, cheap.InetDown = 0.2911, 0.28, "Oslo, NO", 1840.2
	pricey := base
	pricey.ID, pricey.AskContractID, pricey.MachineID = 24817702, 24817702, 31301
	pricey.DPHTotal, pricey.Geolocation = 0.6120, "Texas, US"
	flaky := base
	flaky.ID, flaky.AskContractID, flaky.MachineID = 24817803, 24817803, 31320
	flaky.DPHTotal, flaky.Reliability, flaky.Reliability2, flaky.Geolocation = 0.2210, 0.8120, 0.8120, "Lyon, FR"
	a100 := base
	a100.ID, a100.AskContractID, a100.MachineID = 24817904, 24817904, 31400
	a100.GPUName, a100.GPURAM, a100.GPUTotalRAM, a100.DPHTotal, a100.Geolocation = "A100 SXM4", 81920, 81920, 0.9870, "Quebec, CA"
	smallDisk := base
	smallDisk.ID, smallDisk.AskContractID, smallDisk.MachineID = 24818005, 24818005, 31500
	smallDisk.DiskSpace, smallDisk.DPHTotal, smallDisk.Geolocation = 32.0, 0.2501, "Texas, US"
	noPorts := base
	noPorts.ID, noPorts.AskContractID, noPorts.MachineID = 24818106, 24818106, 31600
	noPorts.DirectPortCount, noPorts.DPHTotal, noPorts.Geolocation = 0, 0.2702, "Bavaria, DE"
	return []vast.Offer{base, cheap, pricey, flaky, a100, smallDisk, noPorts}
}

// SetOffers replaces the offers.
func (s *Server) SetOffers(offers []vast.Offer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offers = s.offers[:0]
	for _, o := range offers {
		b, _ := json.Marshal(o)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		s.offers = append(s.offers, m)
	}
}

// SetSSHTarget makes running instances point at host:port (direct SSH via
// ports["22/tcp"], and the proxy fields too).
func (s *Server) SetSSHTarget(host string, port int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sshHost, s.sshPort = host, port
}

// SetAuthorizedKeysFile applies the contract's key rule (§13.6): account
// keys present when an instance is created, and keys attached to it later,
// are written to this authorized_keys file of the test's sshd.
func (s *Server) SetAuthorizedKeysFile(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authorizedKeys = path
}

// SetKeyDelay makes the account keys of instances created from now on
// work only d after creation, as on Vast where SSH may refuse keys for a
// few seconds after the instance runs (reference §11, §13.7). Keys
// attached to an instance work at once.
func (s *Server) SetKeyDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keyDelay = d
}

// FailCreate makes every following create fail as f (CreateOK to stop).
func (s *Server) FailCreate(f CreateFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.createFail = f
}

// SetWalk chooses the state walk of instances created from now on.
func (s *Server) SetWalk(w Walk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.walk = w
}

// RateLimit makes the next n calls of endpoint answer 429 without a
// Retry-After header. Endpoints: user, search, create, show, list, destroy, ssh.
func (s *Server) RateLimit(endpoint string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit[endpoint] = n
}

// ShowDestroyedAs404 makes GET of a destroyed instance answer 404 instead
// of {"instances": null} (§4.1 leaves both open).
func (s *Server) ShowDestroyedAs404(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.show404 = on
}

// AddInstance creates a running instance directly (as if made by another
// tool or a crashed pixery) and returns its id.
func (s *Server) AddInstance(label string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID
	s.nextID++
	var offer map[string]any
	if len(s.offers) > 0 {
		offer = s.offers[0]
	}
	s.instances[id] = &instance{id: id, offer: offer, label: label, image: vast.DefaultImage, walk: WalkNormal,
		polls: 10, created: time.Now(), disk: 50}
	return id
}

// Alive lists the ids of instances not destroyed, in order.
func (s *Server) Alive() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int64
	for id, in := range s.instances {
		if !in.destroyed {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Destroyed reports whether the instance existed and was destroyed.
func (s *Server) Destroyed(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	return ok && in.destroyed
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// AccountKeys returns the public keys on the account.
func (s *Server) AccountKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.accountKeys {
		out = append(out, k.PublicKey)
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body,
		Auth: r.Header.Get("Authorization")})

	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if key == "" {
		key = r.URL.Query().Get("api_key")
	}
	if key != s.Key {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"success": false, "error": "auth_error", "msg": "Invalid user key"})
		return
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	seg := strings.Split(strings.TrimPrefix(p, "/"), "/")
	endpoint, handler := s.route(r.Method, seg)
	if handler == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "not_found", "msg": "no route " + r.Method + " " + r.URL.Path})
		return
	}
	if n := s.rateLimit[endpoint]; n > 0 {
		s.rateLimit[endpoint] = n - 1
		if endpoint == "create" {
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"detail": "API requests too frequent endpoint threshold=4.5"})
			return
		}
		// Plain text and no Retry-After, as Vast does (§10).
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, "API requests too frequent")
		return
	}
	handler(w, r, seg, body)
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, seg []string, body []byte)

func (s *Server) route(method string, seg []string) (string, handlerFunc) {
	if len(seg) < 3 || seg[0] != "api" {
		return "", nil
	}
	v, rest := seg[1], seg[2:]
	switch {
	case v == "v0" && len(rest) == 2 && rest[0] == "users" && rest[1] == "current" && method == http.MethodGet:
		return "user", s.user
	case v == "v0" && len(rest) == 1 && rest[0] == "bundles" && method == http.MethodPost:
		return "search", s.search
	case v == "v0" && len(rest) == 2 && rest[0] == "asks" && method == http.MethodPut:
		return "create", s.create
	case v == "v0" && len(rest) == 2 && rest[0] == "instances" && method == http.MethodGet:
		return "show", s.show
	case v == "v0" && len(rest) == 2 && rest[0] == "instances" && method == http.MethodDelete:
		return "destroy", s.destroy
	case v == "v0" && len(rest) == 2 && rest[0] == "instances" && method == http.MethodPut:
		return "state", s.setState
	case v == "v0" && len(rest) == 3 && rest[0] == "instances" && rest[2] == "ssh" && method == http.MethodPost:
		return "ssh", s.attachKey
	case v == "v1" && len(rest) == 1 && rest[0] == "instances" && method == http.MethodGet:
		return "list", s.list
	case v == "v0" && len(rest) == 1 && rest[0] == "ssh" && method == http.MethodGet:
		return "ssh", s.listKeys
	case v == "v0" && len(rest) == 1 && rest[0] == "ssh" && method == http.MethodPost:
		return "ssh", s.addKey
	}
	return "", nil
}

func (s *Server) user(w http.ResponseWriter, _ *http.Request, _ []string, _ []byte) {
	writeJSON(w, http.StatusOK, map[string]any{"id": 412233, "email": "dev@example.com", "username": "pixery-dev",
		"credit": 18.42, "balance": 0.0, "can_pay": true, "has_billing": true,
		"ssh_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests pixery"})
}

// number reads a JSON number or numeric string (§13.2: accept both).
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func equal(a, b any) bool {
	if x, ok := a.(string); ok {
		y, ok := b.(string)
		return ok && x == y
	}
	if x, ok := a.(bool); ok {
		switch y := b.(type) {
		case bool:
			return x == y
		case string:
			return strconv.FormatBool(x) == strings.ToLower(y)
		}
		return false
	}
	x, ok1 := number(a)
	y, ok2 := number(b)
	return ok1 && ok2 && x == y
}

// match applies one field's operator object to an offer value.
func match(val any, ops map[string]any) (bool, error) {
	for op, operand := range ops {
		var ok bool
		switch op {
		case "eq":
			ok = equal(val, operand)
		case "neq":
			ok = !equal(val, operand)
		case "gt", "gte", "lt", "lte":
			x, ok1 := number(val)
			y, ok2 := number(operand)
			if !ok1 || !ok2 {
				return false, fmt.Errorf("operator %s needs numbers", op)
			}
			ok = map[string]bool{"gt": x > y, "gte": x >= y, "lt": x < y, "lte": x <= y}[op]
		case "in", "notin":
			list, isList := operand.([]any)
			if !isList {
				return false, fmt.Errorf("operator %s needs a list", op)
			}
			found := false
			for _, e := range list {
				if equal(val, e) {
					found = true
				}
			}
			ok = found == (op == "in")
		default:
			return false, fmt.Errorf("unknown operator %q", op)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func (s *Server) search(w http.ResponseWriter, _ *http.Request, _ []string, body []byte) {
	var q map[string]any
	if err := json.Unmarshal(body, &q); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args", "msg": "query is not a JSON object"})
		return
	}
	if t, ok := q["type"]; ok && t != "on-demand" && t != "ondemand" && t != "bid" && t != "reserved" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args", "msg": fmt.Sprintf("bad type %v", t)})
		return
	}
	var out []map[string]any
	for _, o := range s.offers {
		id, _ := number(o["id"])
		if s.rented[int64(id)] {
			continue
		}
		keep := true
		for field, cond := range q {
			switch field {
			case "order", "type", "limit", "allocated_storage", "disable_bundling":
				continue
			}
			ops, ok := cond.(map[string]any)
			if !ok {
				writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args", "msg": "field " + field + " needs an operator object"})
				return
			}
			val, present := o[field]
			if !present {
				continue // contract: apply filters to fields present
			}
			m, err := match(val, ops)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args", "msg": field + ": " + err.Error()})
				return
			}
			if !m {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, o)
		}
	}
	if ord, ok := q["order"].([]any); ok {
		sort.SliceStable(out, func(i, j int) bool {
			for _, pair := range ord {
				p, _ := pair.([]any)
				if len(p) == 0 {
					continue
				}
				f, _ := p[0].(string)
				desc := len(p) > 1 && p[1] == "desc"
				a, _ := number(out[i][f])
				b, _ := number(out[j][f])
				if a != b {
					return (a < b) != desc
				}
			}
			return false
		})
	}
	if lim, ok := number(q["limit"]); ok && lim >= 0 && int(lim) < len(out) {
		out = out[:int(lim)]
	}
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"offers": out})
}

func (s *Server) create(w http.ResponseWriter, _ *http.Request, seg []string, body []byte) {
	askID, err := strconv.ParseInt(seg[len(seg)-1], 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args", "msg": "bad ask id"})
		return
	}
	var req struct {
		ClientID string            `json:"client_id"`
		Image    string            `json:"image"`
		Disk     any               `json:"disk"`
		Runtype  string            `json:"runtype"`
		Label    string            `json:"label"`
		Env      map[string]string `json:"env"`
		Onstart  string            `json:"onstart"`
		Price    *float64          `json:"price"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args",
			"msg": "error 400/3467: Invalid args: " + err.Error()})
		return
	}
	var offer map[string]any
	for _, o := range s.offers {
		if id, _ := number(o["id"]); int64(id) == askID {
			offer = o
		}
	}
	switch {
	case s.createFail == CreateOfferGone404 || offer == nil:
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "invalid_args", "ask_id": askID,
			"msg": fmt.Sprintf("error 404/3603: no_such_ask Instance type by id %d is not available.", askID)})
		return
	case s.createFail == CreateOfferGone410 || s.rented[askID]:
		writeJSON(w, http.StatusGone, map[string]any{"success": false, "error": "no_such_ask", "ask_id": askID,
			"msg": fmt.Sprintf("error 410/3907: no_such_ask Instance type %d is no longer available.", askID)})
		return
	case s.createFail == CreateBadArgs || req.Image == "":
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args",
			"msg": "error 400/3467: Invalid args: image is required"})
		return
	case s.createFail == CreateInsufficientCredit:
		writeJSON(w, http.StatusPaymentRequired, map[string]any{"success": false, "error": "insufficient_credit", "msg": "Insufficient credit"})
		return
	}
	disk, ok := number(req.Disk)
	if !ok || disk < 8 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args",
			"msg": "error 400/3467: Invalid args: disk must be at least 8"})
		return
	}
	id := s.nextID
	s.nextID++
	in := &instance{id: id, offer: offer, label: req.Label, image: req.Image, runtype: req.Runtype,
		onstart: req.Onstart, env: req.Env, disk: disk, walk: s.walk, created: time.Now()}
	for _, k := range s.accountKeys {
		in.keys = append(in.keys, k.PublicKey)
	}
	in.keysAt = in.created.Add(s.keyDelay)
	s.instances[id] = in
	s.rented[askID] = true
	s.writeAuthorizedKeys()
	if s.keyDelay > 0 {
		time.AfterFunc(s.keyDelay, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.writeAuthorizedKeys()
		})
	}
	if s.createFail == CreateLostAnswer {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
	}
	if s.createFail == CreateBidQuirk {
		in.bidQuirk = true
		writeJSON(w, http.StatusOK, map[string]any{"success": false, "new_contract": id,
			"msg": "bid could not be placed: instance created in stopped state"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "new_contract": id})
}

// writeAuthorizedKeys puts the keys of live instances into the sshd's
// authorized_keys (the fake's instances all share one SSH server).
func (s *Server) writeAuthorizedKeys() {
	if s.authorizedKeys == "" {
		return
	}
	seen := map[string]bool{}
	var b strings.Builder
	now := time.Now()
	for _, in := range s.instances {
		if in.destroyed {
			continue
		}
		keys := in.attached
		if !now.Before(in.keysAt) {
			keys = append(append([]string(nil), in.keys...), in.attached...)
		}
		for _, k := range keys {
			if !seen[k] {
				seen[k] = true
				b.WriteString(k + "\n")
			}
		}
	}
	_ = os.WriteFile(s.authorizedKeys, []byte(b.String()), 0o600)
}

// view renders an instance at its current step of the walk.
func (s *Server) view(in *instance) map[string]any {
	gpu, _ := in.offer["gpu_name"].(string)
	dph, _ := number(in.offer["dph_total"])
	geo, _ := in.offer["geolocation"].(string)
	v := map[string]any{
		"id": in.id, "label": in.label, "intended_status": "running", "cur_state": "running", "next_state": "running",
		"actual_status": nil, "status_msg": nil, "image_uuid": in.image, "image_runtype": "ssh ssh_direc ssh_proxy",
		"gpu_name": gpu, "num_gpus": 1, "gpu_ram": in.offer["gpu_ram"], "disk_space": in.disk, "dph_total": dph,
		"start_date": float64(in.created.UnixNano()) / 1e9, "end_date": float64(in.created.Add(30 * 24 * time.Hour).Unix()),
		"ssh_host": s.sshHost, "ssh_port": s.sshPort, "ssh_idx": "7",
		"public_ipaddr": s.sshHost + "\n", "local_ipaddrs": "10.0.3.17 172.17.0.1 \n",
		"direct_port_start": 40100, "direct_port_end": 40199, "direct_port_count": 100,
		"ports": nil, "onstart": in.onstart, "geolocation": geo, "machine_id": in.offer["machine_id"],
	}
	var extra [][]string
	for k, val := range in.env {
		extra = append(extra, []string{k, val})
	}
	v["extra_env"] = extra
	if in.bidQuirk {
		v["cur_state"], v["intended_status"], v["next_state"] = "stopped", "stopped", "stopped"
		v["actual_status"] = "created"
		return v
	}
	step := in.polls
	loading := "Pulling image " + in.image
	switch {
	case step == 0:
	case in.walk == WalkOCIError:
		v["actual_status"] = "created"
		v["status_msg"] = "Error response from daemon: failed to create task for container: : OCI runtime create failed: runc create failed: unable to start container process"
	case in.walk == WalkStopped:
		// actual_status stays null: only the stopped triple tells (§4.4).
		v["cur_state"], v["intended_status"], v["next_state"] = "stopped", "stopped", "stopped"
		v["status_msg"] = "machine could not start the instance"
	case step == 1 || in.walk == WalkStuckLoading:
		v["actual_status"] = "loading"
		v["status_msg"] = loading
	case in.walk == WalkExited:
		v["actual_status"] = "exited"
		v["status_msg"] = "container exited with code 1"
	case in.walk == WalkOffline:
		v["actual_status"] = "offline"
		v["status_msg"] = "host disconnected"
	default:
		v["actual_status"] = "running"
		v["status_msg"] = "success, running " + strings.ReplaceAll(in.image, ":", "_") + "/ssh"
		port := strconv.Itoa(s.sshPort)
		v["ports"] = map[string]any{
			"22/tcp":   []map[string]string{{"HostIp": "0.0.0.0", "HostPort": port}},
			"8000/tcp": []map[string]string{{"HostIp": "0.0.0.0", "HostPort": "40180"}},
		}
	}
	return v
}

func (s *Server) lookup(seg []string) (*instance, int64) {
	id, err := strconv.ParseInt(seg[3], 10, 64)
	if err != nil {
		return nil, 0
	}
	in, ok := s.instances[id]
	if !ok || in.destroyed {
		return nil, id
	}
	return in, id
}

func (s *Server) show(w http.ResponseWriter, _ *http.Request, seg []string, _ []byte) {
	in, _ := s.lookup(seg)
	if in == nil {
		if s.show404 {
			writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "no_such_instance", "msg": "Instance not found"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"instances": nil})
		return
	}
	v := s.view(in)
	in.polls++
	writeJSON(w, http.StatusOK, map[string]any{"instances": v})
}

func (s *Server) destroy(w http.ResponseWriter, _ *http.Request, seg []string, _ []byte) {
	in, _ := s.lookup(seg)
	if in == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "no_such_instance", "msg": "Instance not found"})
		return
	}
	in.destroyed = true
	if id, ok := number(in.offer["id"]); ok {
		delete(s.rented, int64(id))
	}
	s.writeAuthorizedKeys()
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

func (s *Server) setState(w http.ResponseWriter, _ *http.Request, seg []string, body []byte) {
	in, _ := s.lookup(seg)
	if in == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "no_such_instance", "msg": "Instance not found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

func (s *Server) attachKey(w http.ResponseWriter, _ *http.Request, seg []string, body []byte) {
	in, _ := s.lookup(seg)
	if in == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "no_such_instance", "msg": "Instance not found"})
		return
	}
	var req struct {
		SSHKey string `json:"ssh_key"`
	}
	if json.Unmarshal(body, &req) != nil || strings.TrimSpace(req.SSHKey) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "no_ssh_key", "msg": "No ssh key provided"})
		return
	}
	in.attached = append(in.attached, strings.TrimSpace(req.SSHKey))
	s.writeAuthorizedKeys()
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "msg": "SSH key attached successfully"})
}

func (s *Server) listKeys(w http.ResponseWriter, _ *http.Request, _ []string, _ []byte) {
	keys := s.accountKeys
	if keys == nil {
		keys = []sshKey{}
	}
	writeJSON(w, http.StatusOK, keys)
}

func (s *Server) addKey(w http.ResponseWriter, _ *http.Request, _ []string, body []byte) {
	var req struct {
		SSHKey string `json:"ssh_key"`
	}
	if json.Unmarshal(body, &req) != nil || strings.TrimSpace(req.SSHKey) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "no_ssh_key", "msg": "No ssh key provided"})
		return
	}
	k := sshKey{ID: s.nextKeyID, UserID: 412233, PublicKey: strings.TrimSpace(req.SSHKey), CreatedAt: "2025-11-25T10:00:00Z"}
	s.nextKeyID++
	s.accountKeys = append(s.accountKeys, k)
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "key": k})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, _ []string, _ []byte) {
	q := r.URL.Query()
	var filters map[string]map[string]any
	if f := q.Get("select_filters"); f != "" {
		if err := json.Unmarshal([]byte(f), &filters); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "invalid_args", "msg": "select_filters: " + err.Error()})
			return
		}
	}
	limit := 25
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 && l < 25 {
		limit = l
	}
	after := int64(0)
	if t := q.Get("after_token"); t != "" {
		after, _ = strconv.ParseInt(t, 10, 64)
	}
	var ids []int64
	for id, in := range s.instances {
		if !in.destroyed {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var all []map[string]any
	labels := map[string]int{}
	for _, id := range ids {
		v := s.view(s.instances[id])
		keep := true
		for field, ops := range filters {
			if m, err := match(v[field], ops); err != nil || !m {
				keep = false
			}
		}
		if keep {
			all = append(all, v)
			if l, _ := v["label"].(string); l != "" {
				labels[l]++
			}
		}
	}
	var page []map[string]any
	var next any
	for _, v := range all {
		if id, _ := number(v["id"]); int64(id) <= after {
			continue
		}
		if len(page) == limit {
			id, _ := number(page[len(page)-1]["id"])
			next = strconv.FormatInt(int64(id), 10)
			break
		}
		page = append(page, v)
	}
	if page == nil {
		page = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "instances": page, "instances_found": len(all),
		"total_instances": len(ids), "label_counts": labels, "next_token": next})
}
