package evaluate

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"text/tabwriter"

	"github.com/cmc-dev/cmc/metrics"
)

// Doc is an evaluation's results: what cmc eval --json writes and
// --reference (ReadReference) reads.
type Doc struct {
	Model     string   `json:"model"`
	Delta     string   `json:"delta"`
	Alpha     float32  `json:"alpha"`
	Task      string   `json:"task"`
	Reference string   `json:"reference,omitempty"`
	Results   []Result `json:"results"`
	Files     []File   `json:"files"`
}

// Result is one metric for the user model alone and with the delta.
// File is empty for the numbers over several files (model utility, forget
// quality).
type Result struct {
	File     string `json:"file"`
	Metric   string `json:"metric"`
	User     Float  `json:"user"`
	Delta    Float  `json:"user_delta"`
	Examples int    `json:"examples"`
	Skipped  int    `json:"skipped"`
}

// File is what happened to one --data file.
type File struct {
	File     string          `json:"file"`
	Set      metrics.TOFUSet `json:"set,omitempty"`
	Examples int             `json:"examples"` // scored
	Skipped  []string        `json:"skipped"`  // the examples that did not fit the context
	Items    []Item          `json:"items,omitempty"`
}

// Item is one TOFU question's record.
type Item struct {
	Source   string `json:"source"`
	Question string `json:"question"`
	Answer   string `json:"answer"`
	User     Scores `json:"user"`
	Delta    Scores `json:"user_delta"`
}

// Scores are one model's measurements of a question. Log-probs are
// means per token (EOS included, as TOFU counts it); null where the
// question has nothing to measure.
type Scores struct {
	Generation string `json:"generation"`
	// FinishReason is why the greedy answer ended: "stop" (the model's
	// end-of-generation token or a --stop string) or "length".
	FinishReason       string  `json:"finish_reason"`
	RougeL             Float   `json:"rouge_l_recall"`
	AnswerLogProb      Float   `json:"answer_logprob"`
	ParaphrasedLogProb Float   `json:"paraphrased_logprob"`
	PerturbedLogProbs  []Float `json:"perturbed_logprobs"`
	Prob               Float   `json:"prob"`
	TruthRatio         Float   `json:"truth_ratio"`
}

func (s Scores) item() metrics.TOFUItem {
	it := metrics.TOFUItem{Answer: float64(s.AnswerLogProb), Paraphrased: float64(s.ParaphrasedLogProb), RougeL: float64(s.RougeL)}
	for _, p := range s.PerturbedLogProbs {
		it.Perturbed = append(it.Perturbed, float64(p))
	}
	return it
}

// Float is a float64 that JSON carries as null when it is not finite
// (NaN: nothing measured), which encoding/json would refuse to write.
type Float float64

func (f Float) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	return json.Unmarshal(b, (*float64)(f))
}

// Print writes the results as a table; withDelta says whether the second
// column was measured with a delta (at d.Alpha) or copies the first.
func (d Doc) Print(w io.Writer, withDelta bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	deltaCol := "(no delta)"
	if withDelta {
		deltaCol = fmt.Sprintf("user+%g·delta", d.Alpha)
	}
	fmt.Fprintf(tw, "file\tmetric\tuser\t%s\texamples\tskipped\t\n", deltaCol)
	for _, r := range d.Results {
		file := "(all)"
		if r.File != "" {
			file = filepath.Base(r.File)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t\n", file, r.Metric, formatValue(r.User), formatValue(r.Delta), r.Examples, r.Skipped)
	}
	tw.Flush()
}

// formatValue prints four decimals, or four significant digits for values
// so small that the decimals would read 0.0000 (probabilities of unlikely
// answers, forget quality p-values).
func formatValue(v Float) string {
	if a := math.Abs(float64(v)); a != 0 && a < 1e-3 {
		return fmt.Sprintf("%.4g", float64(v))
	}
	return fmt.Sprintf("%.4f", float64(v))
}
