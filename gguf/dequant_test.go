package gguf

import (
	"strings"
	"testing"
)

// The values are checked against ggml in llama/ggmltype_test.go (it needs
// cgo); here: the shapes Dequantize refuses, and one block by hand.
func TestDequantizeRefusesWrongSizes(t *testing.T) {
	if _, err := Dequantize(TypeQ4_K, make([]byte, 143), 256); err == nil || !strings.Contains(err.Error(), "143 bytes for 256 elements, want 144") {
		t.Errorf("short Q4_K block: %v", err)
	}
	if _, err := Dequantize(TypeQ4_0, make([]byte, 18), 31); err == nil {
		t.Error("31 elements of Q4_0 (blocks of 32) accepted")
	}
	if _, err := Dequantize(TypeIQ2_XXS, make([]byte, 66), 256); err == nil || !strings.Contains(err.Error(), "cannot dequantise tensor type IQ2_XXS") {
		t.Errorf("IQ2_XXS: %v", err)
	}
}

func TestDequantizeQ4_0ByHand(t *testing.T) {
	b := make([]byte, 18)
	b[0], b[1] = 0x00, 0x40 // f16 2.0
	b[2] = 0x9F             // element 0: 0xF-8 = 7, element 16: 0x9-8 = 1
	out, err := Dequantize(TypeQ4_0, b, 32)
	if err != nil {
		t.Fatal(err)
	}
	if out[0] != 14 || out[16] != 2 || out[1] != -16 {
		t.Errorf("got %v, want 14 at 0, 2 at 16, -16 at 1", out)
	}
}
