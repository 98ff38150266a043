package gguf

import (
	"fmt"
	"math"
)

// ValueType is the type code of a metadata value, as stored in the file.
type ValueType uint32

// The GGUF metadata type codes.
const (
	ValueUint8   ValueType = 0
	ValueInt8    ValueType = 1
	ValueUint16  ValueType = 2
	ValueInt16   ValueType = 3
	ValueUint32  ValueType = 4
	ValueInt32   ValueType = 5
	ValueFloat32 ValueType = 6
	ValueBool    ValueType = 7
	ValueString  ValueType = 8
	ValueArray   ValueType = 9
	ValueUint64  ValueType = 10
	ValueInt64   ValueType = 11
	ValueFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	ValueUint8: "uint8", ValueInt8: "int8", ValueUint16: "uint16", ValueInt16: "int16",
	ValueUint32: "uint32", ValueInt32: "int32", ValueFloat32: "float32", ValueBool: "bool",
	ValueString: "string", ValueArray: "array", ValueUint64: "uint64", ValueInt64: "int64",
	ValueFloat64: "float64",
}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// known reports whether t is one of the 13 type codes of the format.
func (t ValueType) known() bool { return t <= ValueFloat64 }

// encodedSize is the size in bytes of one value of a fixed-size type, and
// the smallest possible encoding of a string (its length) or an array (its
// element type and length). It bounds how many elements the remaining bytes
// of a file can hold before anything is allocated for them.
func (t ValueType) encodedSize() int64 {
	switch t {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64, ValueString:
		return 8
	case ValueArray:
		return 12
	}
	return 0
}

func (t ValueType) isSigned() bool {
	return t == ValueInt8 || t == ValueInt16 || t == ValueInt32 || t == ValueInt64
}

func (t ValueType) isUnsigned() bool {
	return t == ValueUint8 || t == ValueUint16 || t == ValueUint32 || t == ValueUint64
}

// Value is one metadata value: a scalar, a string, or an array whose elements
// all have one type (arrays of arrays are allowed, each inner array with its
// own element type). The zero Value has type uint8 and value 0.
//
// Arrays keep their elements in a slice of the matching Go type ([]string,
// []float32, []int32, ...), so a 100k-token vocabulary costs one slice, not
// 100k Values.
type Value struct {
	Type ValueType

	// bits holds integers (signed ones sign-extended), the IEEE bits of
	// floats, and 0/1 for bools.
	bits uint64
	str  string
	// elem and array are set when Type is ValueArray. array is one of
	// []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32,
	// []bool, []string, []uint64, []int64, []float64, or []Value (arrays of
	// arrays).
	elem  ValueType
	array any
}

// Scalar is the set of Go types that map onto GGUF scalar metadata types.
type Scalar interface {
	uint8 | int8 | uint16 | int16 | uint32 | int32 | float32 | bool | string | uint64 | int64 | float64
}

// NewScalar returns the Value holding v, with the GGUF type matching v's Go type.
func NewScalar[T Scalar](v T) Value {
	switch x := any(v).(type) {
	case uint8:
		return Value{Type: ValueUint8, bits: uint64(x)}
	case int8:
		return Value{Type: ValueInt8, bits: uint64(int64(x))}
	case uint16:
		return Value{Type: ValueUint16, bits: uint64(x)}
	case int16:
		return Value{Type: ValueInt16, bits: uint64(int64(x))}
	case uint32:
		return Value{Type: ValueUint32, bits: uint64(x)}
	case int32:
		return Value{Type: ValueInt32, bits: uint64(int64(x))}
	case float32:
		return Value{Type: ValueFloat32, bits: uint64(math.Float32bits(x))}
	case bool:
		if x {
			return Value{Type: ValueBool, bits: 1}
		}
		return Value{Type: ValueBool}
	case string:
		return Value{Type: ValueString, str: x}
	case uint64:
		return Value{Type: ValueUint64, bits: x}
	case int64:
		return Value{Type: ValueInt64, bits: uint64(x)}
	case float64:
		return Value{Type: ValueFloat64, bits: math.Float64bits(x)}
	}
	panic("unreachable: Scalar covers every case")
}

// NewArray returns an array Value holding a copy of v.
func NewArray[T Scalar](v []T) Value {
	c := append([]T(nil), v...)
	if c == nil {
		c = []T{}
	}
	var zero T
	return Value{Type: ValueArray, elem: NewScalar(zero).Type, array: c}
}

// NewArrayOfArrays returns an array whose elements are arrays themselves.
func NewArrayOfArrays(elems []Value) (Value, error) {
	for i, e := range elems {
		if e.Type != ValueArray {
			return Value{}, fmt.Errorf("array of arrays: element %d has type %v, want array", i, e.Type)
		}
	}
	return Value{Type: ValueArray, elem: ValueArray, array: append([]Value{}, elems...)}, nil
}

// Uint64 returns an integer value of any type that is not negative.
func (v Value) Uint64() (uint64, bool) {
	switch {
	case v.Type.isUnsigned():
		return v.bits, true
	case v.Type.isSigned() && int64(v.bits) >= 0:
		return v.bits, true
	}
	return 0, false
}

// Int64 returns an integer value of any type that fits in an int64.
func (v Value) Int64() (int64, bool) {
	switch {
	case v.Type.isSigned():
		return int64(v.bits), true
	case v.Type.isUnsigned() && v.bits <= math.MaxInt64:
		return int64(v.bits), true
	}
	return 0, false
}

// Float64 returns a float32 or float64 value.
func (v Value) Float64() (float64, bool) {
	switch v.Type {
	case ValueFloat32:
		return float64(math.Float32frombits(uint32(v.bits))), true
	case ValueFloat64:
		return math.Float64frombits(v.bits), true
	}
	return 0, false
}

// Bool returns a bool value.
func (v Value) Bool() (bool, bool) {
	if v.Type != ValueBool {
		return false, false
	}
	return v.bits != 0, true
}

// String returns a string value. It is not fmt.Stringer: Describe renders
// any value as text.
func (v Value) String() (string, bool) {
	if v.Type != ValueString {
		return "", false
	}
	return v.str, true
}

// ElemType returns the element type of an array value.
func (v Value) ElemType() (ValueType, bool) {
	if v.Type != ValueArray {
		return 0, false
	}
	return v.elem, true
}

// Len returns the number of elements of an array value, 0 for anything else.
func (v Value) Len() int {
	if v.Type != ValueArray {
		return 0
	}
	switch a := v.array.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []Value:
		return len(a)
	}
	return 0
}

// Index returns element i of an array value as a Value.
func (v Value) Index(i int) Value {
	switch a := v.array.(type) {
	case []uint8:
		return NewScalar(a[i])
	case []int8:
		return NewScalar(a[i])
	case []uint16:
		return NewScalar(a[i])
	case []int16:
		return NewScalar(a[i])
	case []uint32:
		return NewScalar(a[i])
	case []int32:
		return NewScalar(a[i])
	case []float32:
		return NewScalar(a[i])
	case []bool:
		return NewScalar(a[i])
	case []string:
		return NewScalar(a[i])
	case []uint64:
		return NewScalar(a[i])
	case []int64:
		return NewScalar(a[i])
	case []float64:
		return NewScalar(a[i])
	case []Value:
		return a[i]
	}
	panic(fmt.Sprintf("gguf: Index(%d) on a %v value", i, v.Type))
}

// Array returns the elements of an array value, each as a Value.
func (v Value) Array() ([]Value, bool) {
	if v.Type != ValueArray {
		return nil, false
	}
	out := make([]Value, v.Len())
	for i := range out {
		out[i] = v.Index(i)
	}
	return out, true
}

// Strings returns the elements of an array of strings. The slice is shared
// with the Value: do not modify it.
func (v Value) Strings() ([]string, bool) {
	a, ok := v.array.([]string)
	return a, ok
}

// Float32s returns the elements of an array of float32. The slice is shared
// with the Value: do not modify it.
func (v Value) Float32s() ([]float32, bool) {
	a, ok := v.array.([]float32)
	return a, ok
}

// Int32s returns the elements of an array of int32. The slice is shared
// with the Value: do not modify it.
func (v Value) Int32s() ([]int32, bool) {
	a, ok := v.array.([]int32)
	return a, ok
}

// Ints returns the elements of an array of any integer type as int64; ok is
// false for other arrays and when a uint64 element does not fit.
func (v Value) Ints() ([]int64, bool) {
	if v.Type != ValueArray || !(v.elem.isSigned() || v.elem.isUnsigned()) {
		return nil, false
	}
	out := make([]int64, v.Len())
	for i := range out {
		x, ok := v.Index(i).Int64()
		if !ok {
			return nil, false
		}
		out[i] = x
	}
	return out, true
}

// typeName describes v's type for error messages: "uint32", "array of string".
func (v Value) typeName() string {
	if v.Type == ValueArray {
		return "array of " + v.elem.String()
	}
	return v.Type.String()
}
