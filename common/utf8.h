// UTF-8 validity, for text that goes into a protobuf `string` field: a unit
// refuses a whole frame (MALFORMED_FRAME) when such a field is not valid
// UTF-8, so the host checks names the operator gives before sending them.
#ifndef HSMSIM_COMMON_UTF8_H_
#define HSMSIM_COMMON_UTF8_H_

#include <cstddef>
#include <string_view>

namespace hsmsim {

// IsValidUtf8 is true when `text` is well-formed UTF-8 (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), as protobuf
// requires of a proto3 string field.
bool IsValidUtf8(std::string_view text);

// FirstInvalidUtf8 returns the offset of the first byte that is not part of
// well-formed UTF-8, or text.size() when `text` is valid.
size_t FirstInvalidUtf8(std::string_view text);

}  // namespace hsmsim

#endif  // HSMSIM_COMMON_UTF8_H_
