package frame

import (
	"encoding/binary"
	"unicode/utf8"
)

// ParseClose validates the payload of a close frame and splits it into status
// code and reason. An empty payload yields (CodeNoStatus, "", nil). A payload
// of length 1, longer than 125 bytes, or with a code that is not valid on the
// wire (see ValidCloseCode) is a 1002 error; a reason that is not UTF-8 is a
// 1007 error. The error is always a *Error.
func ParseClose(payload []byte) (code uint16, reason string, err error) {
	switch {
	case len(payload) == 0:
		return CodeNoStatus, "", nil
	case len(payload) == 1 || len(payload) > MaxControlPayload:
		return 0, "", errCloseLen
	}
	code = binary.BigEndian.Uint16(payload)
	if !ValidCloseCode(code) {
		return 0, "", errCloseCode
	}
	r := payload[2:]
	if !utf8.Valid(r) {
		return 0, "", errCloseReasonUTF8
	}
	return code, string(r), nil
}

// ValidCloseCode reports whether code may appear in a close frame on the
// wire: 1000–1003, 1007–1014 (the RFC 6455 codes and those IANA registered
// since: 1012 service restart, 1013 try again later, 1014 bad gateway) and
// 3000–4999 (registered and private use). 1004–1006 and 1015 are reserved and
// never sent; everything else below 3000 is unassigned.
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
