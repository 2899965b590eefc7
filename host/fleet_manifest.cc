#include "host/fleet_manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_join.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/admin_key_file.h"

namespace hsmsim::host {
namespace {

using json = nlohmann::json;

absl::Status Bad(std::string_view source, std::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadManifest,
               StrCat("fleet manifest ", source, ": ", what));
}

}  // namespace

std::vector<const FleetUnit*> FleetManifest::SelectedUnits() const {
  std::vector<const FleetUnit*> out;
  for (const FleetUnit& unit : units) {
    if (unit.selected) out.push_back(&unit);
  }
  return out;
}

FleetUnit* FleetManifest::FindUnit(std::string_view name) {
  for (FleetUnit& unit : units) {
    if (unit.name == name) return &unit;
  }
  return nullptr;
}

absl::Status FleetManifest::SelectOnly(const std::vector<std::string>& names) {
  std::vector<std::string> unknown;
  for (const std::string& name : names) {
    if (name.empty()) {
      return Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit,
                   "--unit holds an empty unit name (two commas, or an empty value); nothing "
                   "was done");
    }
    if (FindUnit(name) == nullptr) unknown.push_back(name);
  }
  if (!unknown.empty()) {
    std::vector<std::string> known;
    for (const FleetUnit& unit : units) known.push_back(unit.name);
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit,
                 StrCat("fleet.json has no unit ", absl::StrJoin(unknown, ", "),
                        " (its units: ", absl::StrJoin(known, ", "), "); nothing was done"));
  }
  for (FleetUnit& unit : units) {
    unit.selected = std::find(names.begin(), names.end(), unit.name) != names.end();
  }
  selection_overridden = true;
  return absl::OkStatus();
}

std::vector<std::string> FleetManifest::LeftOut() const {
  std::vector<std::string> out;
  for (const FleetUnit& unit : units) {
    if (!unit.selected) out.push_back(unit.name);
  }
  return out;
}

std::string FleetManifest::SelectAdvice(const std::vector<std::string>& left_out) const {
  if (selection_overridden) {
    return StrCat("name ", absl::StrJoin(left_out, ", "),
                  " in --unit too, or leave --unit out to use fleet.json's selection");
  }
  return StrCat("hsmctl unit add ", absl::StrJoin(left_out, " "));
}

namespace {

// ParseTlsFiles reads the top-level "tls" object, when there is one.
absl::StatusOr<FleetTlsFiles> ParseTlsFiles(const json& doc, std::string_view source) {
  FleetTlsFiles files;
  if (!doc.contains("tls")) return files;
  const json& tls = doc["tls"];
  if (!tls.is_object()) return Bad(source, "\"tls\" is not an object");
  for (auto [key, field] :
       {std::pair{"ca", &files.ca}, std::pair{"client_cert", &files.client_cert},
        std::pair{"client_key", &files.client_key}}) {
    if (!tls.contains(key) || !tls[key].is_string() || tls[key].get<std::string>().empty()) {
      return Bad(source, StrCat("\"tls\": \"", key, "\" is missing or not a file name"));
    }
    *field = tls[key].get<std::string>();
  }
  return files;
}

}  // namespace

absl::StatusOr<FleetManifest> ParseFleetManifest(std::string_view text, std::string_view source) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Bad(source, "not valid JSON (damaged or truncated?)");
  if (!doc.is_object()) return Bad(source, "the top level is not a JSON object");
  if (!doc.contains("format") || doc["format"] != "hsmsim-fleet") {
    return Bad(source, "\"format\" is not \"hsmsim-fleet\"");
  }
  if (!doc.contains("format_version") || !doc["format_version"].is_number_integer()) {
    return Bad(source, "\"format_version\" is missing or not an integer");
  }
  if (doc["format_version"].get<int64_t>() != kFleetManifestVersion) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kUnsupportedManifestVersion,
        StrCat("fleet manifest ", source, ": format_version ", doc["format_version"].get<int64_t>(),
               " is not supported (this hsmctl reads ", kFleetManifestVersion, ")"));
  }
  FleetManifest manifest;
  auto get_string = [&](const json& obj, const char* key, std::string_view where,
                        bool required) -> absl::StatusOr<std::string> {
    if (!obj.contains(key)) {
      if (required) return Bad(source, StrCat(where, "\"", key, "\" is missing"));
      return std::string();
    }
    if (!obj[key].is_string()) return Bad(source, StrCat(where, "\"", key, "\" is not a string"));
    return obj[key].get<std::string>();
  };
  HSMSIM_ASSIGN_OR_RETURN(manifest.instance, get_string(doc, "instance", "", false));
  HSMSIM_ASSIGN_OR_RETURN(manifest.keystore, get_string(doc, "keystore", "", false));
  HSMSIM_ASSIGN_OR_RETURN(manifest.tls, ParseTlsFiles(doc, source));
  if (!doc.contains("units") || !doc["units"].is_array()) {
    return Bad(source, "\"units\" is missing or not an array");
  }
  std::set<std::string> names;
  size_t index = 0;
  for (const json& u : doc["units"]) {
    const std::string where = StrCat("units[", index++, "]: ");
    if (!u.is_object()) return Bad(source, StrCat(where, "not an object"));
    FleetUnit unit;
    HSMSIM_ASSIGN_OR_RETURN(unit.name, get_string(u, "name", where, true));
    HSMSIM_ASSIGN_OR_RETURN(unit.endpoint, get_string(u, "endpoint", where, true));
    HSMSIM_ASSIGN_OR_RETURN(unit.state_dir, get_string(u, "state_dir", where, false));
    HSMSIM_ASSIGN_OR_RETURN(std::string unit_id_hex, get_string(u, "unit_id", where, false));
    auto unit_id = FromHex(unit_id_hex);
    if (!unit_id.ok()) {
      return Bad(source, StrCat(where, "\"unit_id\" '", Printable(unit_id_hex), "' is not hex"));
    }
    unit.unit_id = *std::move(unit_id);
    if (unit.name.empty()) return Bad(source, StrCat(where, "\"name\" is empty"));
    if (unit.endpoint.find(':') == std::string::npos) {
      return Bad(source, StrCat(where, "endpoint '", unit.endpoint, "' is not HOST:PORT"));
    }
    if (u.contains("pid")) {
      if (!u["pid"].is_number_integer() || u["pid"].get<int64_t>() < 0 ||
          u["pid"].get<int64_t>() > INT32_MAX) {
        return Bad(source, StrCat(where, "\"pid\" is not a process id"));
      }
      unit.pid = static_cast<int>(u["pid"].get<int64_t>());
    }
    for (auto [key, field] : {std::pair{"selected", &unit.selected},
                              std::pair{"stopped", &unit.stopped}, std::pair{"tls", &unit.tls}}) {
      if (!u.contains(key)) continue;
      if (!u[key].is_boolean())
        return Bad(source, StrCat(where, "\"", key, "\" is not true/false"));
      *field = u[key].get<bool>();
    }
    if (unit.tls && manifest.tls.empty()) {
      return Bad(source, StrCat(where, "speaks TLS but the fleet has no \"tls\" files"));
    }
    if (!names.insert(unit.name).second) {
      return Bad(source, StrCat("unit name '", unit.name, "' appears twice"));
    }
    manifest.units.push_back(std::move(unit));
  }
  return manifest;
}

std::string SerializeFleetManifest(const FleetManifest& manifest) {
  json doc;
  doc["format"] = "hsmsim-fleet";
  doc["format_version"] = kFleetManifestVersion;
  doc["instance"] = manifest.instance;
  doc["keystore"] = manifest.keystore;
  doc["units"] = json::array();
  for (const FleetUnit& unit : manifest.units) {
    doc["units"].push_back({{"name", unit.name},
                            {"endpoint", unit.endpoint},
                            {"state_dir", unit.state_dir},
                            {"unit_id", ToHex(unit.unit_id)},
                            {"pid", unit.pid},
                            {"selected", unit.selected},
                            {"stopped", unit.stopped},
                            {"tls", unit.tls}});
  }
  if (!manifest.tls.empty()) {
    doc["tls"] = {{"ca", manifest.tls.ca},
                  {"client_cert", manifest.tls.client_cert},
                  {"client_key", manifest.tls.client_key}};
  }
  return doc.dump(2) + "\n";
}

std::string FleetManifestPath(const std::string& fleet_dir) {
  return (std::filesystem::path(fleet_dir) / kFleetManifestFile).string();
}

absl::StatusOr<FleetManifest> LoadFleetManifest(const std::string& fleet_dir) {
  const std::string path = FleetManifestPath(fleet_dir);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(absl::StatusCode::kNotFound, reason::kNoFleet,
                 StrCat("no fleet manifest at ", path,
                        "; start a fleet with `hsmctl fleet up` or choose one with --fleet DIR"));
  }
  HSMSIM_ASSIGN_OR_RETURN(std::string text, ReadFileBytes(path));
  return ParseFleetManifest(text, path);
}

absl::Status SaveFleetManifest(const std::string& fleet_dir, const FleetManifest& manifest) {
  const std::string path = FleetManifestPath(fleet_dir);
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  HSMSIM_RETURN_IF_ERROR(WriteNewFile(tmp, SerializeFleetManifest(manifest), 0600));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Error(absl::StatusCode::kInternal, reason::kFileWriteFailed,
                 StrCat("cannot rename ", tmp, " to ", path, ": ", std::strerror(errno)));
  }
  int dir_fd = ::open(fleet_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::host
