// corpus_generator DIR: writes the seed corpora of the fuzzers into
// DIR/{frame_codec_fuzzer,request_dispatcher_fuzzer,state_file_fuzzer}/.
// The committed fuzz/corpus/ was made with it; rerun it after a change to
// the wire or state format:  build-fuzz/fuzz/corpus_generator fuzz/corpus
#include <openssl/sha.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/hex.h"
#include "emulator/state_store.h"
#include "fuzz/fixed_unit.h"
#include "proto/wire/frame_codec.h"
#include "proto/wire/packed_blobs.h"

namespace {

using namespace hsmsim;  // NOLINT

void Write(const std::filesystem::path& dir, const std::string& bytes) {
  std::filesystem::create_directories(dir);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  std::ofstream out(dir / ToHex(absl::Span<const uint8_t>(digest, 8)), std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: corpus_generator DIR\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  fuzz::FixedUnit fixed;
  std::vector<v1::Request> requests;
  auto add = [&](v1::Request r) {
    r.set_id(requests.size() + 1);
    requests.push_back(std::move(r));
  };
  std::vector<std::string> blobs;
  for (int i = 0; i < 4; ++i) blobs.push_back(fixed.Blob("fuzz-key-" + std::to_string(i)));

  v1::Request r;
  r.mutable_get_info();
  add(r);
  r.Clear();
  r.mutable_generate_key()->set_key_id("k1");
  r.mutable_generate_key()->set_algorithm(v1::KEY_ALGORITHM_AES_256);
  add(r);
  r.Clear();
  r.mutable_wrap_key()->set_blob(blobs[0]);
  r.mutable_wrap_key()->set_plaintext(std::string(32, 'd'));
  add(r);
  {
    v1::Response wrapped = fixed.unit->HandleReadOnly(r);
    r.Clear();
    r.mutable_unwrap_key()->set_blob(blobs[0]);
    r.mutable_unwrap_key()->set_wrapped(wrapped.wrap_key().wrapped());
    add(r);
  }
  r.Clear();
  for (const std::string& b : blobs) r.mutable_reencrypt_batch()->add_blobs(b);
  r.mutable_reencrypt_batch()->add_blobs("not a blob");
  add(r);
  {
    v1::Response reencrypted = fixed.unit->HandleReadOnly(r);
    r.Clear();
    for (const auto& result : reencrypted.reencrypt_batch().results()) {
      r.mutable_reencrypt_from_old()->add_blobs(result.blob());
    }
    add(r);
  }
  r.Clear();
  for (const std::string& b : blobs) r.mutable_check_blobs()->add_blobs(b);
  add(r);
  // The same batches packed (docs/protocol.md section 10.6).
  {
    std::vector<std::string> packed_blobs = blobs;
    packed_blobs.emplace_back("not a blob");
    auto pack = [&](v1::PackedBlobs& packed) {
      wire::PackedBlobsWriter writer(packed, packed_blobs.size(), 0);
      for (const std::string& b : packed_blobs) writer.Add(b);
    };
    r.Clear();
    pack(*r.mutable_reencrypt_batch()->mutable_packed());
    add(r);
    r.Clear();
    pack(*r.mutable_reencrypt_from_old()->mutable_packed());
    add(r);
    r.Clear();
    pack(*r.mutable_check_blobs()->mutable_packed());
    add(r);
    r.Clear();
    wire::PackedBlobsWriter ids(*r.mutable_generate_keys()->mutable_packed_key_ids(), 2, 0);
    ids.Add("fuzz-key-1");
    ids.Add("fuzz-key-2");
    add(r);
  }

  // Signed commands, valid for the fixed unit's counter.
  std::vector<v1::Command> commands(9);
  commands[0].mutable_set_immediate();
  commands[1].mutable_assign_instance()->set_instance("kms-fuzz");
  commands[2].mutable_clear_new_master_key();
  commands[3].mutable_clear_current_master_key();
  commands[4].mutable_zeroize();
  commands[5].mutable_set_thresholds()->set_signature_threshold(1);
  commands[5].mutable_set_thresholds()->set_revocation_threshold(1);
  commands[6].mutable_generate_importer();
  commands[7].mutable_add_admin()->set_name("second");
  commands[7].mutable_add_admin()->set_public_key(fixed.admin.public_key_der);
  commands[8] = fuzz::FixedUnit::Commit(
      {fuzz::FixedUnit::Part(3), fuzz::FixedUnit::Part(4), fuzz::FixedUnit::Part(5)});
  for (const v1::Command& c : commands) add(fixed.Sign(c));
  // Fault injection messages (the firmware refuses them as unknown).
  r.Clear();
  r.mutable_inject_fault()->mutable_fault()->set_point(v1::FAULT_BEFORE_PERSIST);
  add(r);

  for (const v1::Request& request : requests) {
    Write(root / "request_dispatcher_fuzzer", request.SerializeAsString());
    // The frame codec fuzzer's first byte picks the maximum frame size.
    Write(root / "frame_codec_fuzzer", std::string(1, '\x05') + wire::EncodeFrame(request));
  }
  Write(root / "frame_codec_fuzzer", std::string("\x05\x00", 2));
  Write(root / "frame_codec_fuzzer", std::string("\x02\xff\xff\xff\xff\x0f", 6));

  // Snapshots of the unit in several states, raw and sealed as a state file
  // under the state file fuzzer's device key.
  const std::string device_key(emulator::kDeviceKeySize, '\x42');
  auto add_state = [&](const firmware::CryptoUnit& unit) {
    SecretBytes snapshot = unit.Snapshot();
    std::string raw(snapshot.begin(), snapshot.end());
    Write(root / "state_file_fuzzer", raw);
    auto sealed = emulator::EncodeStateFile(AsBytes(device_key), AsBytes(raw), fixed.entropy);
    if (sealed.ok()) Write(root / "state_file_fuzzer", *sealed);
  };
  add_state(*fixed.unit);
  auto fresh = firmware::CryptoUnit::Create(fixed.entropy);
  add_state(**fresh);
  fixed.Apply(commands[0]);  // promoted: CURRENT, OLD
  add_state(*fixed.unit);
  fixed.Apply(fixed.LoadParts({fuzz::FixedUnit::Part(9)}, 2));  // NEW partially loaded
  add_state(*fixed.unit);
  std::printf("wrote %zu requests and 8 state files under %s\n", requests.size(),
              root.string().c_str());
  return 0;
}
