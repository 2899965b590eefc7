// Value types for the two names of a master key on the host: its
// verification pattern (VP, 32 bytes) and its wrapping-key id (WKID, the
// first 16 bytes of the VP, which every blob carries).
//
// Both print in full (Hex) or in one short form (Short: the first 16 hex
// digits), the same for a VP and for its WKID, so a short VP in one report
// and a short WKID in another read alike. VPs and WKIDs are compared in
// constant time: DESIGN.md treats them as secrets-adjacent.
//
// Thread-safety: immutable values, safe to share.
#ifndef HSMSIM_HOST_MASTER_KEY_ID_H_
#define HSMSIM_HOST_MASTER_KEY_ID_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace hsmsim::host {

// Number of hex digits of the short form of a VP or WKID.
inline constexpr size_t kShortIdHexDigits = 16;

// ShortId returns the short form of raw VP or WKID bytes as the wire carries
// them (possibly empty, for an empty register): "-" when `id` is empty, else
// the hex of its first kShortIdHexDigits / 2 bytes (all of them when shorter).
std::string ShortId(std::string_view id);

// SameId compares two raw VPs or WKIDs in constant time (lengths are not
// secret); true when both are empty.
bool SameId(std::string_view a, std::string_view b);

class Wkid;

// VerificationPattern is a master key's 32-byte VP.
class VerificationPattern {
 public:
  static constexpr size_t kSize = 32;

  // FromBytes returns the VP of exactly kSize raw bytes; INVALID_ARGUMENT
  // (BAD_VP) naming the size otherwise.
  static absl::StatusOr<VerificationPattern> FromBytes(std::string_view bytes);
  // FromHex parses 64 hex digits (either case); INVALID_ARGUMENT (BAD_VP)
  // on any other length or a non-hex digit.
  static absl::StatusOr<VerificationPattern> FromHex(std::string_view hex);

  // bytes returns the 32 raw bytes.
  const std::string& bytes() const { return bytes_; }
  // Hex returns all 64 lower-case hex digits.
  std::string Hex() const;
  // Short returns the first kShortIdHexDigits hex digits.
  std::string Short() const { return ShortId(bytes_); }
  // wkid returns the WKID of this VP (its first 16 bytes).
  Wkid wkid() const;

  // Constant-time equality.
  friend bool operator==(const VerificationPattern& a, const VerificationPattern& b) {
    return SameId(a.bytes_, b.bytes_);
  }

 private:
  explicit VerificationPattern(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string bytes_;
};

// Wkid is a master key's 16-byte wrapping-key id.
class Wkid {
 public:
  static constexpr size_t kSize = 16;

  // FromBytes returns the WKID of exactly kSize raw bytes; INVALID_ARGUMENT
  // (BAD_WKID) naming the size otherwise.
  static absl::StatusOr<Wkid> FromBytes(std::string_view bytes);
  // Of returns the WKID of `vp`.
  static Wkid Of(const VerificationPattern& vp) { return vp.wkid(); }

  // bytes returns the 16 raw bytes.
  const std::string& bytes() const { return bytes_; }
  // Hex returns all 32 lower-case hex digits.
  std::string Hex() const;
  // Short returns the first kShortIdHexDigits hex digits (the same as the
  // short form of its VP).
  std::string Short() const { return ShortId(bytes_); }

  // Constant-time equality.
  friend bool operator==(const Wkid& a, const Wkid& b) { return SameId(a.bytes_, b.bytes_); }

 private:
  friend class VerificationPattern;
  explicit Wkid(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string bytes_;
};

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_MASTER_KEY_ID_H_
