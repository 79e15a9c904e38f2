package safetensors

// DType names the element type of a tensor as spelled in a safetensors
// header.
type DType string

// The element types pixery knows. Sub-byte types (F4, F6_E2M3, F6_E3M2) are
// deliberately absent: their byte lengths do not follow from a shape alone, so
// a header using them is rejected rather than half-understood.
const (
	F64     DType = "F64"
	F32     DType = "F32"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I64     DType = "I64"
	I32     DType = "I32"
	I16     DType = "I16"
	I8      DType = "I8"
	U64     DType = "U64"
	U32     DType = "U32"
	U16     DType = "U16"
	U8      DType = "U8"
	Bool    DType = "BOOL"
	F8E4M3  DType = "F8_E4M3"
	F8E5M2  DType = "F8_E5M2"
	F8E8M0  DType = "F8_E8M0"
	Complex DType = "C64" // two float32s
)

// Size returns the number of bytes of one element, or 0 for a type pixery
// does not know.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64, Complex:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, Bool, F8E4M3, F8E5M2, F8E8M0:
		return 1
	}
	return 0
}

// IsFloat reports whether ReadFloat32 can convert this type.
func (d DType) IsFloat() bool {
	switch d {
	case F64, F32, F16, BF16:
		return true
	}
	return false
}
