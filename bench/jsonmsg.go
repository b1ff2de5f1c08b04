package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
)

// jsonSize is the size of every message of the compression scenario.
const jsonSize = 4096

// jsonVariants is how many distinct messages the server cycles through.
const jsonVariants = 64

// jsonCRC is the tail of every message: `,"crc":"` + 8 hex digits + `"}`.
// The digits are the CRC-32 (IEEE) of everything before the tail, so a
// client checks a message on its own.
const jsonCRC = len(`,"crc":"00000000"}`)

var (
	symbols = []string{"ACME", "GLOBX", "INITECH", "UMBRL", "STARK", "WAYNE", "TYRELL", "CYBDYN"}
	venues  = []string{"XNAS", "XNYS", "ARCX", "BATS"}
	sides   = []string{"buy", "sell"}
	words   = []string{"order", "book", "update", "for", "the", "market", "session", "with", "depth", "and", "recent", "trades"}
)

// jsonMessage returns message seq of the compression scenario: exactly
// jsonSize bytes of deterministic JSON shaped like a market-data update
// (repeated keys, short vocabularies, random prices and quantities), which
// flate level 1 shrinks about 5×, ending with its own CRC-32.
func jsonMessage(seq int) []byte {
	r := rand.New(rand.NewPCG(uint64(seq), 0x5eed))
	b := make([]byte, 0, jsonSize)
	b = fmt.Appendf(b, `{"type":"book","seq":%d,"venue":%q,"symbol":%q,"ts":%d,"levels":[`,
		seq, venues[seq%len(venues)], symbols[seq%len(symbols)], 1_763_700_000_000+int64(seq)*137)
	for i := 0; len(b) < jsonSize-700; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"side":%q,"px":"%d.%02d","qty":%d,"orders":%d,"id":"%s-%08d","currency":"USD","status":"open","tif":"day"}`,
			sides[r.IntN(2)], 100+r.IntN(20), 5*r.IntN(20), 100*(1+r.IntN(50)), 1+r.IntN(9),
			symbols[seq%len(symbols)], seq*100+i)
	}
	b = append(b, `],"note":"`...)
	for end := jsonSize - jsonCRC - 1; len(b) < end; {
		w := words[r.IntN(len(words))]
		if len(b)+len(w)+1 > end {
			w = "xxxxxxxx"[:end-len(b)-1] // every word is shorter than 8
		}
		b = append(append(b, w...), ' ')
	}
	b = append(b, '"')
	sum := binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(b))
	b = append(b, `,"crc":"`...)
	b = hex.AppendEncode(b, sum)
	return append(b, `"}`...)
}

// checkJSON reports whether p is a message of the compression scenario:
// jsonSize bytes whose CRC-32 matches the one it carries.
func checkJSON(p []byte) bool {
	if len(p) != jsonSize {
		return false
	}
	body, tail := p[:len(p)-jsonCRC], p[len(p)-jsonCRC:]
	var want [4]byte
	if _, err := hex.Decode(want[:], tail[8:16]); err != nil || string(tail[:8]) != `,"crc":"` {
		return false
	}
	return binary.BigEndian.Uint32(want[:]) == crc32.ChecksumIEEE(body)
}
