package data

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestOrder(t *testing.T) {
	// Pinned: a resumed run depends on these never changing, whatever the
	// Go release.
	if got, want := Order(10, 42, 0), []int{8, 6, 1, 0, 5, 9, 2, 7, 4, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("Order(10, 42, 0) = %v, want %v", got, want)
	}
	if got, want := Order(10, 42, 1), []int{1, 6, 5, 2, 4, 8, 9, 0, 7, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("Order(10, 42, 1) = %v, want %v", got, want)
	}

	const n = 5000
	a, b := Order(n, 7, 3), Order(n, 7, 3)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed and epoch gave different orders")
	}
	sorted := slices.Clone(a)
	slices.Sort(sorted)
	for i, v := range sorted {
		if v != i {
			t.Fatalf("Order(%d, ...) is not a permutation: sorted[%d] = %d", n, i, v)
		}
	}
	if reflect.DeepEqual(a, Order(n, 7, 4)) || reflect.DeepEqual(a, Order(n, 8, 3)) {
		t.Error("another epoch or seed gave the same order")
	}
	// A shuffle leaves few elements in place (about 1 expected).
	fixed := 0
	for i, v := range a {
		if i == v {
			fixed++
		}
	}
	if fixed > 10 {
		t.Errorf("%d of %d elements in place: not shuffled", fixed, n)
	}
	if len(Order(0, 1, 0)) != 0 || !reflect.DeepEqual(Order(1, 1, 0), []int{0}) {
		t.Error("small n")
	}
}

func TestMakeBatch(t *testing.T) {
	seqs := []Sequence{
		{Tokens: []int32{1, 10, 11}, Labels: []int32{no, 11, no}, Source: "a"},
		{Tokens: []int32{1, 20, 21, 22}, Labels: []int32{no, no, 22, no}, Source: "b"},
		{Tokens: []int32{1, 30}, Labels: []int32{30, no}, Source: "c"},
	}
	const pad = 0
	b, err := MakeBatch(seqs, []int{2, 0}, 3, 4, pad)
	if err != nil {
		t.Fatal(err)
	}
	want := Batch{
		Rows: 3, Width: 4,
		Tokens: []int32{
			1, 30, pad, pad,
			1, 10, 11, pad,
			pad, pad, pad, pad,
		},
		Labels: []int32{
			30, no, no, no,
			no, 11, no, no,
			no, no, no, no,
		},
		Lens:    []int{2, 3, 0},
		Sources: []string{"c", "a", ""},
	}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("got  %+v\nwant %+v", b, want)
	}

	if _, err := MakeBatch(seqs, []int{1}, 1, 3, pad); err == nil || !strings.Contains(err.Error(), "b has 4 tokens, more than the batch width 3") {
		t.Errorf("too long: %v", err)
	}
	if _, err := MakeBatch(seqs, []int{0, 1, 2}, 2, 4, pad); err == nil {
		t.Error("more sequences than rows: no error")
	}
}
