// Baselines that hsmctl bench rotate measures in the same run as the
// rotation, so that its report states rotation throughput as a ratio of
// what the disk and a peer HSM do on the same machine at the same time
// (issue "Rotation at the speed of the keystore", item 6).
#ifndef HSMSIM_HOST_HSMCTL_BENCH_BASELINES_H_
#define HSMSIM_HOST_HSMCTL_BENCH_BASELINES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace hsmsim::hsmctl {

// Rows per transaction of the append baseline: the large-transaction case
// of the bare C measurement (64k rows).
inline constexpr int64_t kAppendTransactionRows = 65'536;

// MeasureSqliteAppendLimit measures the bare SQLite append limit on the
// disk holding `dir` (a directory that exists): `rows` rows, each an
// INTEGER PRIMARY KEY in ascending order and a `blob_bytes`-byte blob
// (random bytes, so nothing compresses), appended to a new database file in
// `dir` with the keystore's journal mode (WAL) and synchronous=NORMAL, in
// transactions of kAppendTransactionRows rows through one prepared
// statement. The file and its WAL are removed afterwards, also on error.
// Returns rows per second (wall clock, including the last commit), or the
// SQLite error naming the file.
absl::StatusOr<double> MeasureSqliteAppendLimit(const std::string& dir, int64_t rows,
                                                size_t blob_bytes);

// RunSoftHsmPeer runs the SoftHSMv2 peer benchmark (bench/softhsm_peer_bench,
// the program at `binary`; empty: ../bench/softhsm_peer_bench next to this
// hsmctl) on its 4096-key case and returns its keys per second: C_UnwrapKey
// + C_WrapKey + C_DestroyObject per key through PKCS#11 (see that
// program). Returns UNAVAILABLE (PEER_UNAVAILABLE) naming the cause when the
// program is missing, fails, or skips itself (no libsofthsm2).
absl::StatusOr<double> RunSoftHsmPeer(const std::string& binary);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_BENCH_BASELINES_H_
