package llama

/*
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"

// While llama.cpp quantizes, its log goes through cmc_quant_log, which
// reads the per-tensor progress lines ("[  12/ 100] blk.0.attn_q.weight
// ...") into counters that Go polls, keeps the last error line (llama.cpp
// reports why it failed only in its log), and passes every line on to the
// logger that was installed before.
typedef struct {
	ggml_log_callback prev;
	void * prev_data;
	int done, total;
	char last_error[512];
} cmc_quant_state;

static void cmc_quant_log(enum ggml_log_level level, const char * text, void * data) {
	cmc_quant_state * s = data;
	int done, total;
	if (sscanf(text, "[%d/%d]", &done, &total) == 2) {
		__atomic_store_n(&s->total, total, __ATOMIC_RELAXED);
		__atomic_store_n(&s->done, done, __ATOMIC_RELAXED);
	}
	if (level == GGML_LOG_LEVEL_ERROR && strspn(text, "\n=") != strlen(text)) {
		// llama.cpp frames some errors with lines of '='; keep the words.
		snprintf(s->last_error, sizeof s->last_error, "%s", text + strspn(text, "\n"));
	}
	if (s->prev != NULL) {
		s->prev(level, text, s->prev_data);
	}
}

static cmc_quant_state * cmc_quant_begin(void) {
	cmc_quant_state * s = calloc(1, sizeof *s);
	llama_log_get(&s->prev, &s->prev_data);
	llama_log_set(cmc_quant_log, s);
	return s;
}

static void cmc_quant_end(cmc_quant_state * s) {
	llama_log_set(s->prev, s->prev_data);
	free(s);
}

static int cmc_quant_done(cmc_quant_state * s) { return __atomic_load_n(&s->done, __ATOMIC_RELAXED); }
static int cmc_quant_total(cmc_quant_state * s) { return __atomic_load_n(&s->total, __ATOMIC_RELAXED); }
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// FileType is a llama.cpp file type (llama_ftype): the quantisation of a
// model's weight matrices, named as llama-quantize names them ("Q4_K_M").
// Mixed types such as Q4_K_M keep some tensors at a higher precision
// (Q6_K for the output and parts of attn_v/ffn_down); norms and other
// vectors stay F32 in every type.
type FileType struct {
	Name  string
	ftype C.enum_llama_ftype
}

// fileTypes lists the types Quantize writes, in llama-quantize's order.
// The very-low-bit types (IQ1_*, IQ2_*, Q2_K_S) are left out: llama.cpp
// refuses them without an importance matrix, which cmc does not compute.
func fileTypes() []FileType {
	return []FileType{
		{"Q4_0", C.LLAMA_FTYPE_MOSTLY_Q4_0},
		{"Q4_1", C.LLAMA_FTYPE_MOSTLY_Q4_1},
		{"Q5_0", C.LLAMA_FTYPE_MOSTLY_Q5_0},
		{"Q5_1", C.LLAMA_FTYPE_MOSTLY_Q5_1},
		{"IQ3_XXS", C.LLAMA_FTYPE_MOSTLY_IQ3_XXS},
		{"IQ3_S", C.LLAMA_FTYPE_MOSTLY_IQ3_S},
		{"IQ3_M", C.LLAMA_FTYPE_MOSTLY_IQ3_M},
		{"Q2_K", C.LLAMA_FTYPE_MOSTLY_Q2_K},
		{"Q3_K_S", C.LLAMA_FTYPE_MOSTLY_Q3_K_S},
		{"Q3_K_M", C.LLAMA_FTYPE_MOSTLY_Q3_K_M},
		{"Q3_K_L", C.LLAMA_FTYPE_MOSTLY_Q3_K_L},
		{"IQ4_NL", C.LLAMA_FTYPE_MOSTLY_IQ4_NL},
		{"IQ4_XS", C.LLAMA_FTYPE_MOSTLY_IQ4_XS},
		{"Q4_K_S", C.LLAMA_FTYPE_MOSTLY_Q4_K_S},
		{"Q4_K_M", C.LLAMA_FTYPE_MOSTLY_Q4_K_M},
		{"Q5_K_S", C.LLAMA_FTYPE_MOSTLY_Q5_K_S},
		{"Q5_K_M", C.LLAMA_FTYPE_MOSTLY_Q5_K_M},
		{"Q6_K", C.LLAMA_FTYPE_MOSTLY_Q6_K},
		{"Q8_0", C.LLAMA_FTYPE_MOSTLY_Q8_0},
		{"F16", C.LLAMA_FTYPE_MOSTLY_F16},
		{"BF16", C.LLAMA_FTYPE_MOSTLY_BF16},
		{"F32", C.LLAMA_FTYPE_ALL_F32},
	}
}

// FileTypeNames lists the names ParseFileType accepts.
func FileTypeNames() []string {
	var names []string
	for _, t := range fileTypes() {
		names = append(names, t.Name)
	}
	return names
}

// ParseFileType returns the file type called name (any case).
func ParseFileType(name string) (FileType, error) {
	types := fileTypes()
	if i := slices.IndexFunc(types, func(t FileType) bool { return strings.EqualFold(t.Name, name) }); i >= 0 {
		return types[i], nil
	}
	switch strings.ToUpper(name) {
	case "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S":
		return FileType{}, fmt.Errorf("quantization type %s needs an importance matrix, which cmc quantize does not compute (use llama.cpp's llama-imatrix and llama-quantize --imatrix)", name)
	}
	return FileType{}, fmt.Errorf("unknown quantization type %q; want one of %s", name, strings.Join(FileTypeNames(), ", "))
}

// QuantizeOptions tune Quantize.
type QuantizeOptions struct {
	// Threads quantizing tensors; 0: one per CPU.
	Threads int
	// AllowRequantize lets an already quantized input be quantized again
	// (at a loss); otherwise such an input is an error.
	AllowRequantize bool
	// Progress, when set, is called now and then from another goroutine
	// with the number of tensors written and the total.
	Progress func(done, total int)
}

// quantizeMu serialises Quantize calls: progress and errors are read from
// llama.cpp's log, whose callback is one per process.
var quantizeMu sync.Mutex

// Quantize writes the model in (a GGUF file llama.cpp can load) to out with
// its weights quantized to t, by llama.cpp's own quantizer
// (llama_model_quantize with its default parameters for t). out is written
// atomically: to a temporary file beside it, renamed into place only when
// llama.cpp has finished, so a failure or a crash never leaves a partial
// file under out. llama.cpp offers no way to stop a quantization midway:
// it runs to the end (or the process exits).
func Quantize(in, out string, t FileType, opt QuantizeOptions) error {
	if t.Name == "" {
		return errors.New("quantize: no file type")
	}
	// The quantizer trusts the metadata as the loader does.
	if _, err := readMetadata(in); err != nil {
		return fmt.Errorf("quantize %s: %w", in, err)
	}
	if same, err := sameFile(in, out); err != nil || same {
		if err == nil {
			err = errors.New("the output would overwrite the input")
		}
		return fmt.Errorf("quantize %s to %s: %w", in, out, err)
	}
	// The temporary name follows internal/atomicfile's pattern, so that
	// atomicfile.RemoveStale recognises one a crash left behind.
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp*")
	if err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName) // a no-op once renamed

	initBackend()
	p := C.llama_model_quantize_default_params()
	p.ftype = t.ftype
	p.nthread = C.int32_t(opt.Threads)
	if opt.Threads <= 0 {
		p.nthread = C.int32_t(runtime.NumCPU())
	}
	p.allow_requantize = C.bool(opt.AllowRequantize)
	cin, cout := C.CString(in), C.CString(tmpName)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cout))

	quantizeMu.Lock()
	defer quantizeMu.Unlock()
	state := C.cmc_quant_begin()
	defer C.cmc_quant_end(state)
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		if opt.Progress == nil {
			return
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if total := int(C.cmc_quant_total(state)); total > 0 {
					opt.Progress(int(C.cmc_quant_done(state)), total)
				}
			}
		}
	}()
	rc := C.llama_model_quantize(cin, cout, &p)
	close(stop)
	<-polled
	if rc != 0 {
		reason := C.GoString(&state.last_error[0])
		reason = strings.TrimPrefix(reason, "llama_model_quantize: ")
		reason = strings.TrimSpace(strings.TrimPrefix(reason, "failed to quantize: "))
		switch {
		case reason == "":
			reason = "llama.cpp gave no reason (set " + LogEnv + "=info)"
		case strings.Contains(reason, "Unsupported tensor size"):
			reason += ": a tensor's rows are not a multiple of the type's block size (256 for K-quants, 32 for the others) and the type has no fallback"
		}
		return fmt.Errorf("quantize %s to %s: %s", in, t.Name, reason)
	}
	if opt.Progress != nil {
		if total := int(C.cmc_quant_total(state)); total > 0 {
			opt.Progress(total, total)
		}
	}
	if err := syncFile(tmpName); err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	if err := os.Chmod(tmpName, 0o644); err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	if err := os.Rename(tmpName, out); err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	return nil
}

// sameFile reports whether a and b name one existing file.
func sameFile(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// syncFile flushes what llama.cpp wrote to path to the disk, so the rename
// that follows never publishes a file whose data is still in flight.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
