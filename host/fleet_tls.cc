#include "host/fleet_tls.h"

#include <filesystem>
#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/admin_key_file.h"
#include "host/private_directory.h"
#include "host/tls_certificates.h"

namespace hsmsim::host {
namespace {

namespace fs = std::filesystem;

bool Exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

absl::StatusOr<TlsIdentity> ReadIdentity(const fs::path& cert, const fs::path& key) {
  TlsIdentity out;
  HSMSIM_ASSIGN_OR_RETURN(out.cert_pem, ReadFileBytes(cert.string()));
  HSMSIM_ASSIGN_OR_RETURN(std::string key_pem, ReadFileBytes(key.string()));
  out.key_pem = MakeSecret(key_pem);
  WipeString(&key_pem);
  return out;
}

}  // namespace

absl::StatusOr<FleetTlsFiles> EnsureFleetTls(const std::string& fleet_dir) {
  const fs::path dir = fs::path(fleet_dir) / "tls";
  FleetTlsFiles files{"tls/ca.pem", "tls/hsmctl.pem", "tls/hsmctl.key"};
  const fs::path base(fleet_dir);
  const fs::path all[] = {base / files.ca, dir / "ca.key", base / files.client_cert,
                          base / files.client_key};
  int present = 0;
  for (const fs::path& p : all) present += Exists(p) ? 1 : 0;
  if (present == 4) return files;
  if (present != 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
                 StrCat(dir.string(),
                        " holds only some of ca.pem, ca.key, hsmctl.pem, hsmctl.key; restore "
                        "them or remove the directory to make a new fleet CA"));
  }
  HSMSIM_RETURN_IF_ERROR(CreatePrivateDirectory(dir.string()));
  HSMSIM_ASSIGN_OR_RETURN(TlsIdentity ca, MakeFleetCa("hsmsim fleet CA"));
  HSMSIM_ASSIGN_OR_RETURN(TlsIdentity client, IssueCertificate(ca, "hsmctl", ""));
  HSMSIM_RETURN_IF_ERROR(WriteTlsIdentity(ca, all[0].string(), all[1].string()));
  HSMSIM_RETURN_IF_ERROR(WriteTlsIdentity(client, all[2].string(), all[3].string()));
  return files;
}

absl::StatusOr<UnitTlsFiles> EnsureUnitCertificate(const std::string& fleet_dir,
                                                   const FleetTlsFiles& files,
                                                   const std::string& unit_name,
                                                   const std::string& state_dir,
                                                   const std::string& unit_id) {
  UnitTlsFiles out;
  out.cert = (fs::path(state_dir) / "tls-cert.pem").string();
  out.key = (fs::path(state_dir) / "tls-key.pem").string();
  out.ca = (fs::path(fleet_dir) / files.ca).string();
  if (Exists(out.cert) && Exists(out.key)) {
    auto cert = ReadFileBytes(out.cert);
    if (cert.ok() && UnitIdOfCertificatePem(*cert) == unit_id) return out;
  }
  const fs::path ca_key = fs::path(fleet_dir) / "tls" / "ca.key";
  HSMSIM_ASSIGN_OR_RETURN(TlsIdentity ca, ReadIdentity(fs::path(out.ca), ca_key));
  HSMSIM_ASSIGN_OR_RETURN(TlsIdentity unit, IssueCertificate(ca, unit_name, unit_id));
  std::error_code ec;
  fs::remove(out.cert, ec);
  fs::remove(out.key, ec);
  HSMSIM_RETURN_IF_ERROR(WriteTlsIdentity(unit, out.cert, out.key));
  return out;
}

absl::Status IssueRemoteUnitCertificate(const std::string& fleet_dir, const FleetTlsFiles& files,
                                        const std::string& unit_name, const std::string& unit_id,
                                        const std::string& out_dir) {
  const fs::path out(out_dir);
  const fs::path cert = out / "unit.crt";
  const fs::path key = out / "unit.key";
  const fs::path ca_copy = out / "fleet-ca.crt";
  for (const fs::path& p : {cert, key, ca_copy}) {
    if (Exists(p)) {
      return Error(absl::StatusCode::kAlreadyExists, reason::kFileExists,
                   StrCat(p.string(), " already exists; nothing was written"));
    }
  }
  if (!Exists(out)) HSMSIM_RETURN_IF_ERROR(CreatePrivateDirectory(out.string()));
  const fs::path ca_pem = fs::path(fleet_dir) / files.ca;
  HSMSIM_ASSIGN_OR_RETURN(TlsIdentity ca,
                          ReadIdentity(ca_pem, fs::path(fleet_dir) / "tls" / "ca.key"));
  HSMSIM_ASSIGN_OR_RETURN(TlsIdentity unit, IssueCertificate(ca, unit_name, unit_id));
  HSMSIM_RETURN_IF_ERROR(WriteTlsIdentity(unit, cert.string(), key.string()));
  std::error_code ec;
  fs::copy_file(ca_pem, ca_copy, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove(cert, ec);  // nothing half written: a rerun starts afresh
    fs::remove(key, ec);
    return Error(absl::StatusCode::kInternal, reason::kFileWriteFailed,
                 StrCat("cannot write ", ca_copy.string(), ": ", why));
  }
  fs::permissions(ca_copy,
                  fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                      fs::perms::others_read,
                  ec);
  return absl::OkStatus();
}

absl::StatusOr<TlsIdentity> IssueConsoleCertificate(const std::string& fleet_dir,
                                                    const FleetTlsFiles& files,
                                                    const std::string& ip) {
  const fs::path base(fleet_dir);
  HSMSIM_ASSIGN_OR_RETURN(TlsIdentity ca, ReadIdentity(base / files.ca, base / "tls" / "ca.key"));
  return IssueIpCertificate(ca, "hsmctl console", ip);
}

}  // namespace hsmsim::host
