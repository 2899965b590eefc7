// hsmctl fault inject | clear | list: arm, clear and list the injected faults
// of one unit started with --allow-fault-injection (docs/reliability.md).
#include <cctype>
#include <iostream>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/hsmctl/context.h"
#include "host/unit_client.h"
#include "proto/wire/fault_names.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::hsmctl {
namespace {

struct FaultArgs {
  std::string unit;
  std::string point;
  std::string action;
  uint64_t after_blobs = 0;
  CLI::Option* after_blobs_option = nullptr;
};

// CheckPoint and CheckAction are CLI11 validators: an unknown name is a
// usage error (exit 2).
std::string CheckPoint(const std::string& text) {
  v1::FaultPoint p = v1::FAULT_POINT_UNSPECIFIED;
  if (v1::FaultPoint_Parse(wire::FaultEnumName(text), &p) && p != v1::FAULT_POINT_UNSPECIFIED)
    return "";
  return "POINT must be before-persist, after-persist, reencrypt-after-blobs or in-set-immediate";
}

std::string CheckAction(const std::string& text) {
  v1::FaultAction a = v1::FAULT_ACTION_UNSPECIFIED;
  if (v1::FaultAction_Parse(wire::FaultEnumName(text), &a) && a != v1::FAULT_ACTION_UNSPECIFIED)
    return "";
  return "ACTION must be crash, hang, drop-connection or return-error";
}

// RunFaultRequest sends `request` to the unit named `name` and prints the
// faults armed afterwards.
int RunFaultRequest(Invocation& inv, const std::string& name, std::string_view command,
                    v1::Request request) {
  auto manifest = host::LoadFleetManifest(FleetDir(inv));
  if (!manifest.ok()) return Fail(inv, manifest.status());
  const host::FleetUnit* unit = manifest->FindUnit(name);
  if (unit == nullptr) {
    return Fail(inv, Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit,
                           StrCat("the fleet ", FleetDir(inv), " has no unit named '", name, "'")));
  }
  auto options = FleetClientOptions(inv, *manifest);
  if (!options.ok()) return Fail(inv, options.status());
  auto client = ConnectPinned(*unit, *options);
  if (!client.ok()) return Fail(inv, client.status());

  UnitOutcome o{unit->name, unit->endpoint, absl::OkStatus(), "", json::object()};
  auto response = (*client)->Call(std::move(request));
  if (!response.ok()) {
    o.status = response.status();
  } else if (response->status().code() != 0) {
    absl::Status refused = wire::FromWireStatus(response->status());
    o.status = WithContext(refused, StrCat("unit ", unit->name));
  } else {
    json armed = json::array();
    std::string text;
    for (const v1::Fault& f : response->faults().armed()) {
      armed.push_back(wire::FaultSpec(f));
      text += StrCat(text.empty() ? "" : ", ", wire::FaultSpec(f));
    }
    o.details["armed"] = armed;
    o.text = StrCat("armed: ", text.empty() ? "(none)" : text);
  }
  return ReportOutcomes(inv, command, {o});
}

}  // namespace

void AddFaultCommands(CLI::App& app, Invocation& inv) {
  CLI::App* fault = app.add_subcommand(
      "fault", "Inject faults into a unit started with --allow-fault-injection (testing only)");
  fault->require_subcommand(1);
  auto args = std::make_shared<FaultArgs>();

  CLI::App* inject = fault->add_subcommand(
      "inject", "Arm one fault on UNIT; it fires once at POINT, then disarms");
  inject->add_option("UNIT", args->unit, "The unit's name in the fleet manifest")->required();
  inject
      ->add_option("POINT", args->point,
                   "before-persist, after-persist, reencrypt-after-blobs or in-set-immediate")
      ->required()
      ->check(CLI::Validator(CheckPoint, "POINT"));
  inject->add_option("ACTION", args->action, "crash, hang, drop-connection or return-error")
      ->required()
      ->check(CLI::Validator(CheckAction, "ACTION"));
  args->after_blobs_option =
      inject->add_option("N", args->after_blobs,
                         "reencrypt-after-blobs only (required there): fire once the unit has "
                         "processed N re-encryption blobs since the fault was armed");
  AddNamedUnitOptions(inject, inv);
  AddJsonOption(inject, inv);
  inject->callback([&inv, args] {
    inv.action = [&inv, args] {
      v1::Fault f;
      v1::FaultPoint point = v1::FAULT_POINT_UNSPECIFIED;
      v1::FaultAction action = v1::FAULT_ACTION_UNSPECIFIED;
      v1::FaultPoint_Parse(wire::FaultEnumName(args->point), &point);
      v1::FaultAction_Parse(wire::FaultEnumName(args->action), &action);
      f.set_point(point);
      f.set_action(action);
      const bool counted = point == v1::FAULT_REENCRYPT_AFTER_BLOBS;
      if (counted != (args->after_blobs_option->count() > 0)) {
        std::cerr << "hsmctl: fault inject: "
                  << (counted ? "reencrypt-after-blobs needs N (a blob count)"
                              : "N applies only to reencrypt-after-blobs")
                  << "\n";
        return kExitUsage;
      }
      if (counted) f.set_after_blobs(args->after_blobs);
      v1::Request request;
      *request.mutable_inject_fault()->mutable_fault() = f;
      return RunFaultRequest(inv, args->unit, "fault inject", std::move(request));
    };
  });

  CLI::App* clear = fault->add_subcommand("clear", "Disarm every fault armed on UNIT");
  clear->add_option("UNIT", args->unit, "The unit's name in the fleet manifest")->required();
  AddNamedUnitOptions(clear, inv);
  AddJsonOption(clear, inv);
  clear->callback([&inv, args] {
    inv.action = [&inv, args] {
      v1::Request request;
      request.mutable_clear_faults();
      return RunFaultRequest(inv, args->unit, "fault clear", std::move(request));
    };
  });

  CLI::App* list = fault->add_subcommand("list", "List the faults armed on UNIT");
  list->add_option("UNIT", args->unit, "The unit's name in the fleet manifest")->required();
  AddNamedUnitOptions(list, inv);
  AddJsonOption(list, inv);
  list->callback([&inv, args] {
    inv.action = [&inv, args] {
      // An InjectFaultRequest without a fault arms nothing and lists.
      v1::Request request;
      request.mutable_inject_fault();
      return RunFaultRequest(inv, args->unit, "fault list", std::move(request));
    };
  });
}

}  // namespace hsmsim::hsmctl
