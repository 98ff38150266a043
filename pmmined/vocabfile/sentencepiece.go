package vocabfile

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"github.com/cmc-dev/cmc/vocab"
)

// SentencePiece model protobuf field numbers (sentencepiece_model.proto).
const (
	fieldModelPieces  = 1  // ModelProto.pieces: repeated SentencePiece
	fieldModelTrainer = 2  // ModelProto.trainer_spec: TrainerSpec
	fieldPieceText    = 1  // SentencePiece.piece: string
	fieldPieceType    = 3  // SentencePiece.type: enum, NORMAL = 1 by default
	fieldTrainerUNK   = 40 // TrainerSpec.unk_id, default 0
	fieldTrainerBOS   = 41 // TrainerSpec.bos_id, default 1
	fieldTrainerEOS   = 42 // TrainerSpec.eos_id, default 2
	fieldTrainerPAD   = 43 // TrainerSpec.pad_id, default -1
)

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// ReadSentencePiece loads a SentencePiece ModelProto (tokenizer.model of
// Llama-2, Mistral, ...). Only the pieces, their types and the special ids
// are read; the protobuf is parsed by hand, since these few fields are all
// token mapping needs.
func ReadSentencePiece(path string) (*vocab.Vocab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sentencepiece model: %w", err)
	}
	v, err := parseSentencePiece(data)
	if err != nil {
		return nil, fmt.Errorf("sentencepiece model %s: %w", path, err)
	}
	return v, nil
}

func parseSentencePiece(data []byte) (*vocab.Vocab, error) {
	v := &vocab.Vocab{Model: "llama", UNK: 0, BOS: 1, EOS: 2, PAD: -1}
	err := eachField(data, func(field int, wire int, value uint64, bytes []byte) error {
		switch {
		case field == fieldModelPieces && wire == wireBytes:
			piece, typ, err := parsePiece(bytes)
			if err != nil {
				return fmt.Errorf("piece %d: %w", len(v.Pieces), err)
			}
			v.Pieces = append(v.Pieces, piece)
			v.Types = append(v.Types, typ)
		case field == fieldModelTrainer && wire == wireBytes:
			return eachField(bytes, func(field int, wire int, value uint64, _ []byte) error {
				if wire != wireVarint {
					return nil
				}
				id := int32(value) // proto int32: negative values are 64-bit two's complement
				switch field {
				case fieldTrainerUNK:
					v.UNK = id
				case fieldTrainerBOS:
					v.BOS = id
				case fieldTrainerEOS:
					v.EOS = id
				case fieldTrainerPAD:
					v.PAD = id
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(v.Pieces) == 0 {
		return nil, fmt.Errorf("no pieces (field 1 of ModelProto); is this a SentencePiece model?")
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

func parsePiece(data []byte) (string, vocab.TokenType, error) {
	var piece string
	typ := vocab.TokenNormal
	err := eachField(data, func(field int, wire int, value uint64, bytes []byte) error {
		switch {
		case field == fieldPieceText && wire == wireBytes:
			piece = string(bytes)
		case field == fieldPieceType && wire == wireVarint:
			if value < 1 || value > 6 {
				return fmt.Errorf("piece type %d, want 1..6", value)
			}
			typ = vocab.TokenType(value)
		}
		return nil
	})
	return piece, typ, err
}

// eachField calls fn for each field of a protobuf message: value holds a
// varint or fixed-size field, bytes a length-delimited one.
func eachField(data []byte, fn func(field int, wire int, value uint64, bytes []byte) error) error {
	for off := 0; off < len(data); {
		tag, n := binary.Uvarint(data[off:])
		if n <= 0 {
			return fmt.Errorf("bad protobuf tag at byte %d", off)
		}
		off += n
		field, wire := int(tag>>3), int(tag&7)
		var value uint64
		var bytes []byte
		switch wire {
		case wireVarint:
			value, n = binary.Uvarint(data[off:])
			if n <= 0 {
				return fmt.Errorf("bad varint in field %d at byte %d", field, off)
			}
			off += n
		case wireFixed64:
			if off+8 > len(data) {
				return fmt.Errorf("field %d truncated at byte %d", field, off)
			}
			value = binary.LittleEndian.Uint64(data[off:])
			off += 8
		case wireFixed32:
			if off+4 > len(data) {
				return fmt.Errorf("field %d truncated at byte %d", field, off)
			}
			value = uint64(binary.LittleEndian.Uint32(data[off:]))
			off += 4
		case wireBytes:
			size, n := binary.Uvarint(data[off:])
			if n <= 0 || size > math.MaxInt32 || off+n+int(size) > len(data) {
				return fmt.Errorf("field %d length runs past the end at byte %d", field, off)
			}
			off += n
			bytes = data[off : off+int(size)]
			off += int(size)
		default:
			return fmt.Errorf("unsupported protobuf wire type %d in field %d at byte %d", wire, field, off)
		}
		if err := fn(field, wire, value, bytes); err != nil {
			return err
		}
	}
	return nil
}
