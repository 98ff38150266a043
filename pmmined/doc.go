// Package pmmined maps the tokens of one vocabulary onto another, so that a
// delta model trained with one tokenizer can shift the logits of a user LLM
// that has a different one (Cross-model Control, docs/METHOD.md).
//
// Build sends every user token id to a delta token id (or -1) and records
// which step of the rule decided it (Kind). LoadOrBuild keeps maps in a
// cache directory, keyed by both vocabularies and the strategy.
//
// # Tokens are compared by text
//
// Vocabularies spell text differently: SentencePiece writes a space as
// "▁", byte-level BPE (GPT-2, Llama-3, Qwen; GGUF tokenizer model "gpt2")
// spells every byte through GPT-2's byte-to-unicode table ("Ġ" a space,
// "Ċ" a newline), and "<0xNN>" tokens are single bytes. The rule compares
// the bytes tokens stand for (vocab.Vocab.Text). Edit distances count
// units: Unicode characters, and each byte that is not valid UTF-8 (part of
// a character, as byte-level pieces can hold) as a unit of its own.
// Prefixes are whole units, so a candidate never ends inside a character.
//
// # The rule (strategy pmmined), in order
//
//  1. Special tokens map by role: EOS to EOS, BOS to BOS, UNK to UNK, PAD
//     to PAD (EOS first, for vocabularies that give one token two roles).
//     A control or user-defined token named like a delta special token maps
//     to it (Phi-3's user-defined "</s>"). A token named as an end of turn
//     or text ("<|eot_id|>", "<|im_end|>", "<|end|>", ...) maps to the
//     delta's EOS. Other control tokens (chat headers, placeholders,
//     reserved slots) are unmapped: a name is a label, not text the model
//     writes. Unknown-type and unused slots are unmapped.
//  2. Byte tokens map to the delta's token for the same byte: its "<0xNN>"
//     token, or for a byte-level delta its single-byte token.
//  3. Exact match: the delta text token with the same text (lowest id).
//  4. A byte-level single-byte token maps to the delta's byte token (these
//     256 tokens are a byte-level vocabulary's byte tokens). A piece that
//     starts inside a character or with an incomplete one maps to the
//     delta byte token of its first byte (KindLeadByte): what the delta
//     itself starts with when it spells that character in bytes.
//  5. Candidates are the delta text tokens that the text starts with or
//     that start with the text; a bare space counts only for a text of
//     spaces. The one at minimum Levenshtein distance wins, lowest id on
//     ties. Since the distance between a text and its prefix or extension
//     is their length difference, this is the longest prefix or shortest
//     extension, found through a hash of texts and a sorted index.
//  6. Otherwise the token is unmapped (-1).
//
// Steps 2, 4 and the unit rules only fire for bytes; between two
// SentencePiece vocabularies the result is the paper's rule exactly
// (Mistral-7B onto Llama-2: 75.6% identical pieces, 19.6% mapped to a
// shorter prefix, 0.6% to an extension, 4.2% unmapped). Like the paper's
// rule, it leaves unmapped a text that the delta can spell only in bytes
// beyond its first character ("\n\n" onto Llama-2, which has no newline
// token besides <0x0A>).
//
// The baselines share steps 1-4: exact maps nothing more, and mined takes
// the delta text token at minimum edit distance over the whole vocabulary.
package pmmined
