package features

import (
	"strings"
	"unicode"
)

// Token ids of a Vocabulary: 0 pads a short review, 1 stands for a word
// outside the vocabulary, words start at 2.
const (
	PadID     = 0
	UnknownID = 1
)

// Words splits a review into lowercase words: HTML line breaks are
// spaces, and a word is a run of letters, digits and apostrophes.
func Words(text string) []string {
	text = strings.ReplaceAll(strings.ToLower(text), "<br />", " ")
	return strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}

// Vocabulary maps words to token ids.
type Vocabulary map[string]int

// NewVocabulary numbers words from 2 in the order given (most frequent
// first).
func NewVocabulary(words []string) Vocabulary {
	v := make(Vocabulary, len(words))
	for i, w := range words {
		v[w] = i + 2
	}
	return v
}

// Size is the number of ids, padding and unknown included.
func (v Vocabulary) Size() int { return len(v) + 2 }

// Sequence turns a review into exactly length token ids, as Keras's
// pad_sequences(padding="post", truncating="pre") does: a long review
// keeps its last words, a short one is padded at the end.
func (v Vocabulary) Sequence(text string, length int) []float32 {
	words := Words(text)
	if len(words) > length {
		words = words[len(words)-length:]
	}
	seq := make([]float32, length)
	for i, w := range words {
		id, ok := v[w]
		if !ok {
			id = UnknownID
		}
		seq[i] = float32(id)
	}
	return seq
}
