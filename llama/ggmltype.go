package llama

/*
#include <stdlib.h>
#include "ggml.h"

static int cmc_ggml_to_float(int type, const void * src, float * dst, int64_t n) {
	const struct ggml_type_traits * tr = ggml_get_type_traits((enum ggml_type)type);
	if (tr == NULL || tr->to_float == NULL) {
		return -1;
	}
	tr->to_float(src, dst, n);
	return 0;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/cmc-dev/cmc/gguf"
)

// QuantizeRows quantises nRows rows of nPerRow floats to type t with
// ggml's own quantiser, as llama.cpp's model quantiser does tensor by
// tensor (without an importance matrix). cmc's Go dequantisers
// (gguf.Dequantize) are checked against it and against DequantizeRows.
func QuantizeRows(t gguf.TensorType, src []float32, nPerRow int) ([]byte, error) {
	if nPerRow <= 0 || len(src)%nPerRow != 0 {
		return nil, fmt.Errorf("quantize %s: %d values are not whole rows of %d", t, len(src), nPerRow)
	}
	bs, ts := int(t.BlockSize()), int(t.TypeSize())
	if bs == 0 || nPerRow%bs != 0 {
		return nil, fmt.Errorf("quantize %s: rows of %d values are not whole blocks of %d", t, nPerRow, bs)
	}
	if C.ggml_quantize_requires_imatrix(C.enum_ggml_type(t)) {
		return nil, fmt.Errorf("quantize %s: the type needs an importance matrix", t)
	}
	nRows := len(src) / nPerRow
	dst := make([]byte, nRows*nPerRow/bs*ts)
	if len(src) == 0 {
		return dst, nil
	}
	C.ggml_quantize_chunk(C.enum_ggml_type(t), (*C.float)(unsafe.Pointer(&src[0])), unsafe.Pointer(&dst[0]),
		0, C.int64_t(nRows), C.int64_t(nPerRow), nil)
	return dst, nil
}

// DequantizeRows expands n values of type t with ggml's own to_float.
func DequantizeRows(t gguf.TensorType, src []byte, n int) ([]float32, error) {
	bs, ts := int(t.BlockSize()), int(t.TypeSize())
	if bs == 0 || n%bs != 0 || len(src) != n/bs*ts {
		return nil, fmt.Errorf("dequantize %s: %d bytes for %d values", t, len(src), n)
	}
	dst := make([]float32, n)
	if n == 0 {
		return dst, nil
	}
	if C.cmc_ggml_to_float(C.int(t), unsafe.Pointer(&src[0]), (*C.float)(unsafe.Pointer(&dst[0])), C.int64_t(n)) != 0 {
		return nil, fmt.Errorf("dequantize %s: ggml has no conversion to float for it", t)
	}
	return dst, nil
}
