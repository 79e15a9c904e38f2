package vast

import (
	"context"
	"net/http"
	"strings"
)

// Offer is one rentable machine configuration from a search (§2.4).
type Offer struct {
	ID                int64   `json:"id"`
	AskContractID     int64   `json:"ask_contract_id"`
	MachineID         int64   `json:"machine_id"`
	HostID            int64   `json:"host_id"`
	GPUName           string  `json:"gpu_name"`
	NumGPUs           int     `json:"num_gpus"`
	GPURAM            float64 `json:"gpu_ram"` // MB per GPU
	GPUTotalRAM       float64 `json:"gpu_total_ram"`
	CPUCores          float64 `json:"cpu_cores"`
	CPUCoresEffective float64 `json:"cpu_cores_effective"`
	CPURAM            float64 `json:"cpu_ram"`    // MB
	DiskSpace         float64 `json:"disk_space"` // GB available
	DPHBase           float64 `json:"dph_base"`
	DPHTotal          float64 `json:"dph_total"` // $/h including the storage asked for
	MinBid            float64 `json:"min_bid"`
	StorageCost       float64 `json:"storage_cost"`
	InetDown          float64 `json:"inet_down"` // Mbit/s
	InetUp            float64 `json:"inet_up"`
	Reliability       float64 `json:"reliability"`
	Reliability2      float64 `json:"reliability2"`
	Geolocation       string  `json:"geolocation"`
	CUDAMaxGood       float64 `json:"cuda_max_good"`
	DriverVersion     string  `json:"driver_version"`
	DirectPortCount   int     `json:"direct_port_count"`
	Verification      string  `json:"verification"`
	Rentable          bool    `json:"rentable"`
	Rented            bool    `json:"rented"`
	PublicIPAddr      string  `json:"public_ipaddr"`
	StaticIP          bool    `json:"static_ip"`
	Score             float64 `json:"score"`
}

// VRAMGB is the offer's memory per GPU in GB.
func (o Offer) VRAMGB() float64 { return o.GPURAM / 1024 }

// OfferQuery is what pixery searches for. The zero value of a numeric
// field means "no filter"; NewOfferQuery fills pixery's defaults.
type OfferQuery struct {
	GPUName        string  // exact name as Vast spells it, e.g. "RTX 4090"; "" = any
	NumGPUs        int     // exact count; 0 = any
	MinDiskGB      float64 // the disk that will be rented; also prices the storage
	MaxPrice       float64 // $/h, exclusive (dph_total < MaxPrice)
	MinReliability float64
	MinCUDA        float64 // driver's highest good CUDA version
	MinInetDownMbs float64 // download speed matters: image pull and model downloads
	DirectPorts    bool    // require direct_port_count ≥ 1 (direct SSH, §2.4)
	Order          string  // field to sort by; "dph" is an alias of dph_total
	Descending     bool
	Limit          int
	// NoDefaults turns off the verified/external/rentable/rented filters
	// the vast CLI adds by default (§2.2); pixery normally keeps them.
	NoDefaults bool
}

// NewOfferQuery returns pixery's defaults: one GPU, a CUDA 12.4 capable
// driver (the image is CUDA 12.4 + cuDNN 9), direct SSH ports, reliability
// ≥ 0.98, 50 GB disk, cheapest first, 20 results.
func NewOfferQuery() OfferQuery {
	return OfferQuery{
		NumGPUs:        1,
		MinDiskGB:      50,
		MinReliability: 0.98,
		MinCUDA:        12.4,
		DirectPorts:    true,
		Order:          "dph_total",
		Limit:          20,
	}
}

// aliases of the CLI's query language that users may type for --order (§2.3).
var fieldAliases = map[string]string{
	"dph":        "dph_total",
	"price":      "dph_total",
	"cuda_vers":  "cuda_max_good",
	"dlperf_usd": "dlperf_per_dphtotal",
	"flops_usd":  "flops_per_dphtotal",
	"download":   "inet_down",
}

// OrderField resolves an alias (dph → dph_total) to the API's field name.
func OrderField(name string) string {
	name = strings.TrimSpace(strings.ToLower(name))
	if a, ok := fieldAliases[name]; ok {
		return a
	}
	return name
}

// Body builds the JSON query object of §2.2 / §13.2.
func (q OfferQuery) Body() map[string]any {
	b := map[string]any{}
	if !q.NoDefaults {
		b["verified"] = map[string]any{"eq": true}
		b["external"] = map[string]any{"eq": false}
		b["rentable"] = map[string]any{"eq": true}
		b["rented"] = map[string]any{"eq": false}
	}
	if q.GPUName != "" {
		// The CLI's query language writes spaces as underscores
		// (gpu_name=RTX_4090); the API itself wants the real name.
		b["gpu_name"] = map[string]any{"eq": strings.ReplaceAll(q.GPUName, "_", " ")}
	}
	if q.NumGPUs > 0 {
		b["num_gpus"] = map[string]any{"eq": q.NumGPUs}
	}
	if q.MinDiskGB > 0 {
		b["disk_space"] = map[string]any{"gte": q.MinDiskGB}
		b["allocated_storage"] = q.MinDiskGB
	}
	if q.MaxPrice > 0 {
		b["dph_total"] = map[string]any{"lt": q.MaxPrice}
	}
	if q.MinReliability > 0 {
		b["reliability"] = map[string]any{"gte": q.MinReliability}
	}
	if q.MinCUDA > 0 {
		b["cuda_max_good"] = map[string]any{"gte": q.MinCUDA}
	}
	if q.MinInetDownMbs > 0 {
		b["inet_down"] = map[string]any{"gte": q.MinInetDownMbs}
	}
	if q.DirectPorts {
		b["direct_port_count"] = map[string]any{"gte": 1}
	}
	order := OrderField(q.Order)
	if order == "" {
		order = "dph_total"
	}
	dir := "asc"
	if q.Descending {
		dir = "desc"
	}
	b["order"] = [][]string{{order, dir}}
	b["type"] = "on-demand"
	if q.Limit > 0 {
		b["limit"] = q.Limit
	}
	return b
}

// SearchOffers runs POST /api/v0/bundles/ (§2.1) and returns the offers in
// the order the API gave them.
func (c *Client) SearchOffers(ctx context.Context, q OfferQuery) ([]Offer, error) {
	var out struct {
		Offers []Offer `json:"offers"`
	}
	err := c.do(ctx, request{op: "search offers", method: http.MethodPost, path: "/api/v0/bundles/",
		body: q.Body(), retry: c.Retry}, &out)
	if err != nil {
		return nil, err
	}
	return out.Offers, nil
}
