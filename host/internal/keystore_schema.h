// The SQLite keystore's schema (host/keystore.h): its tables, its version
// number (meta 'schema_version') and the explicit migration from older
// versions (hsmctl keys migrate).
//
// Version 2, blob generations:
//   keys(id, name)                     one row per key; a rotation never
//                                      rewrites it
//   blobs_0, blobs_1(id, blob, wkid)   the blobs of two generations. meta
//       'blob_generation' G (0, 1, 2, ...) says which is which: blobs_{G%2}
//       holds every key's blob (its "current" generation), blobs_{(G+1)%2}
//       the pending blobs of an open rotation, appended in key order as
//       re-encryption goes. Finalizing a rotation switches G in one
//       transaction and empties the old generation (no row rewritten when
//       every key was re-encrypted; its pages are read once).
//   key_problems(id, reason, quarantined), rotation_journal, meta: as in
//       version 1.
// Version 1 (hsmsim before blob generations): keys(id, name, blob, wkid,
//   pending_blob, pending_wkid), updated in place by a rotation.
#ifndef HSMSIM_HOST_INTERNAL_KEYSTORE_SCHEMA_H_
#define HSMSIM_HOST_INTERNAL_KEYSTORE_SCHEMA_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "host/internal/sqlite.h"
#include "host/keystore.h"

namespace hsmsim::host::internal {

// The version this code reads and writes.
inline constexpr int kKeystoreSchemaVersion = 2;

// The two tables of a blob generation.
struct BlobTables {
  std::string current;  // every key's blob
  std::string next;     // pending blobs (empty outside a rotation)
};

// BlobTablesOf names the tables of generation `generation` (>= 0).
BlobTables BlobTablesOf(int64_t generation);

// CountRows runs `sql`, a query whose first column of its first row is a
// count, and returns it (0 when no row). Returns the database's error.
absl::StatusOr<int64_t> CountRows(Database& db, std::string_view sql);

// CreateSchema creates the current schema in an empty database, in one
// transaction. Returns the database's error.
absl::Status CreateSchema(Database& db);

// ReadSchemaVersion returns meta's schema_version of an existing keystore.
// DATA_LOSS (BAD_KEYSTORE) when the database has tables but no keystore
// meta, or no version; NOT_FOUND (NO_KEYSTORE) when the database is empty.
absl::StatusOr<int> ReadSchemaVersion(Database& db);

// CheckSchemaVersion returns OK for kKeystoreSchemaVersion, else
// FAILED_PRECONDITION (UNSUPPORTED_KEYSTORE_VERSION) naming the version
// found and, for version 1, the command that migrates it.
absl::Status CheckSchemaVersion(const Database& db, int version);

// MigrateSchema brings a keystore of version `from` (1 or the current one)
// to kKeystoreSchemaVersion in one transaction: every key keeps its name,
// id, blob, WKID, pending blob, recorded problem and quarantine, and the
// rotation journal is kept as it is. A keystore already current is left
// alone (from_version == to_version). FAILED_PRECONDITION
// (UNSUPPORTED_KEYSTORE_VERSION) for a version it does not know; the
// database's error otherwise (nothing changed then).
absl::StatusOr<KeystoreMigration> MigrateSchema(Database& db, int from);

}  // namespace hsmsim::host::internal

#endif  // HSMSIM_HOST_INTERNAL_KEYSTORE_SCHEMA_H_
