// Package weights reads and writes the weights of the MONAI wholeBody_ct_segmentation
// SegResNet: MONAI (torch.save) checkpoints, and the project's own safetensors-layout file
// with optional f16 storage. It also infers the network configuration from key names and
// shapes, so that every consumer (CPU reference, GPU executor, browser) agrees on one Config.
package weights

// Tensor is one named float32 tensor of a state dict, C-order (last axis fastest), as PyTorch
// stores it.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// StateDict is an ordered set of tensors (file order is kept so written files are stable).
type StateDict struct {
	Tensors []*Tensor
	// Meta holds the string metadata of a safetensors file ("__metadata__"); nil for torch
	// checkpoints.
	Meta   map[string]string
	byName map[string]*Tensor
}

// Config is the SegResNet configuration the bundle uses, with the parts that vary between
// checkpoints inferred from the file (the bundle: F=32, K=105, blocks_down [1,2,2,4],
// blocks_up [1,1,1]; the small golden model: F=8, K=9).
type Config struct {
	InitFilters int   // F
	InChannels  int   // always 1 for this bundle
	OutChannels int   // K
	BlocksDown  []int // ResBlocks per encoder level
	BlocksUp    []int // ResBlocks per decoder level
}

// NewStateDict builds a StateDict from tensors in the given order; a repeated name is an error
// of the caller (readers check it before calling).
func NewStateDict(ts []*Tensor) *StateDict {
	sd := &StateDict{Tensors: ts, byName: make(map[string]*Tensor, len(ts))}
	for _, t := range ts {
		sd.byName[t.Name] = t
	}
	return sd
}

// Get returns the named tensor, or nil.
func (sd *StateDict) Get(name string) *Tensor { return sd.byName[name] }
