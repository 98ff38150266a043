package evaluate

import (
	"encoding/json"
	"math"
	"testing"
)

// TestParseDataArg: TOFU's sets by prefix or by TOFU's file names.
func TestParseDataArg(t *testing.T) {
	for arg, want := range map[string][2]string{
		"data/forget10_perturbed.json":         {"forget", "data/forget10_perturbed.json"},
		"retain_perturbed.json":                {"retain", "retain_perturbed.json"},
		"tofu/real_authors_perturbed.json":     {"real-authors", "tofu/real_authors_perturbed.json"},
		"World-Facts.jsonl":                    {"world-facts", "World-Facts.jsonl"},
		"retain=my/questions.json":             {"retain", "my/questions.json"},
		"world-facts=a=b.json":                 {"world-facts", "a=b.json"},
		"x=forget.json":                        {"forget", "x=forget.json"}, // no set named x: a path
		"alpaca_eval.json":                     {"", "alpaca_eval.json"},
		"real-authors=forget10_perturbed.json": {"real-authors", "forget10_perturbed.json"},
	} {
		set, path := parseDataArg(arg)
		if string(set) != want[0] || path != want[1] {
			t.Errorf("parseDataArg(%q) = %q, %q; want %q, %q", arg, set, path, want[0], want[1])
		}
	}
}

// TestJSONFloat: values that are not measured travel as null and come back
// as NaN, which encoding/json alone refuses to write.
func TestJSONFloat(t *testing.T) {
	b, err := json.Marshal([]Float{0.25, Float(math.NaN()), Float(math.Inf(1))})
	if err != nil || string(b) != "[0.25,null,null]" {
		t.Fatalf("got %s, %v", b, err)
	}
	var back []Float
	if err := json.Unmarshal(b, &back); err != nil || back[0] != 0.25 || !math.IsNaN(float64(back[1])) {
		t.Fatalf("got %v, %v", back, err)
	}
}
