package runner

import (
	"context"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/llama"
)

// Request is one generation of cmc generate or chat: a conversation, the
// delta's strength and how to sample.
type Request struct {
	// Messages is the conversation. Its last message is the user's new
	// query, or an assistant message that both models continue (a prefill).
	Messages []llama.Message
	Alpha    float32 // the delta's strength (0: the user model alone)
	Options  control.Options
}

// Reply is what one generation produced.
type Reply struct {
	control.Result
	// CompletionTokens counts the tokens generated (a served model's
	// tokens are known by their text only: Result.Tokens stays empty).
	CompletionTokens int
	// NotFirstChoice counts, for a served user model, the tokens that were
	// not the engine's own first choice: what the delta (or sampling)
	// changed. 0 for a local model.
	NotFirstChoice int
}

// Generate runs one request on the local or served user model with the
// delta at req.Alpha, calling emit with each new piece of text. A local
// model decodes only what its KV cache does not hold already; a prompt
// that does not fit its context is an error, and a generation that
// reaches the end of the context finishes with "length".
func (r *Runner) Generate(ctx context.Context, req Request, emit func(piece string) error) (Reply, error) {
	if r.Remote != nil {
		text, deltaIDs, err := r.RemotePrompts(req.Messages)
		if err != nil {
			return Reply{}, err
		}
		res, err := r.RemoteGenerate(ctx, text, deltaIDs, req.Alpha, req.Options, emit)
		rep := Reply{Result: res.Result, CompletionTokens: len(res.Pieces)}
		for _, rank := range res.Ranks {
			if rank > 0 {
				rep.NotFirstChoice++
			}
		}
		return rep, err
	}
	userIDs, deltaIDs, _, err := r.ChatPrompts(req.Messages)
	if err != nil {
		return Reply{}, err
	}
	res, err := r.GenerateIDs(ctx, userIDs, deltaIDs, req.Alpha, req.Options, emit)
	return Reply{Result: res, CompletionTokens: len(res.Tokens)}, err
}
