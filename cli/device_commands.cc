// edgeloop device list|show|label|decommission|assign|assignments|rollback.
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "cli/table.h"
#include "common/status.h"

namespace edgeloop::cli {
namespace {

void PrintDevices(const std::vector<const v1::Device*>& devices, std::ostream& out) {
  Table table({"ID", "STATUS", "ONLINE", "TARGET", "ARCH", "RAM MB", "LABELS", "LAST SEEN"});
  for (const v1::Device* d : devices) {
    table.Add({d->id(), d->status() == v1::ACTIVE ? "active" : "decommissioned",
               d->online() ? "yes" : "no",
               d->profile().target().empty() ? "-" : d->profile().target(), d->profile().arch(),
               std::to_string(d->profile().ram_mb()), Pairs(d->labels()),
               Time(d->last_seen_time())});
  }
  out << table.Render();
}

// The newest telemetry window of each model version the device reported, and how its reports
// fare; a caller not allowed to read telemetry sees the rest of the device all the same.
void AddLastWindows(Client& client, const std::string& device_id, Table& table) {
  v1::GetDeviceTelemetryRequest request;
  request.set_device_id(device_id);
  request.set_limit(64);
  v1::DeviceTelemetryReport report;
  if (!client.telemetry().GetDeviceTelemetry(client.Context().get(), request, &report).ok()) {
    return;
  }
  if (report.last_report_ms() == 0) {
    table.Add({"telemetry", "none received"});
    return;
  }
  table.Add({"telemetry",
             absl::StrCat("last report ", TimeMs(report.last_report_ms()), "; windows stored ",
                          report.windows_stored(), ", refused ", report.windows_refused(),
                          ", dropped on the device ", report.windows_dropped())});
  std::set<std::pair<std::string, int64_t>> shown;
  for (const v1::TelemetryWindow& w : report.windows()) {  // newest first
    if (!shown.insert({w.model(), w.version()}).second) continue;
    int64_t labelled = 0, correct = 0;
    for (int64_t n : w.labelled()) labelled += n;
    for (int64_t n : w.correct()) correct += n;
    table.Add({"last window",
               absl::StrCat(w.model(), " v", w.version(), " ending ", TimeMs(w.end_ms()), ": ",
                            w.requests(), " calls, ", w.errors(), " errors",
                            labelled > 0 ? absl::StrCat(", ", correct, "/", labelled, " correct")
                                         : std::string())});
  }
}

}  // namespace

absl::Status DeviceCommand(const Command& c) {
  const Args& args = c.args;
  Client& client = c.client;
  std::ostream& out = c.out;
  RETURN_IF_ERROR(Need(args, 2, "device list|show|label|decommission|assign|assignments ..."));
  const std::string& verb = args.words[1];
  if (verb == "list") {
    v1::ListDevicesRequest request;
    request.set_selector(args.Flag("selector"));
    ASSIGN_OR_RETURN(auto all,
                     AllPages<v1::ListDevicesResponse>(request, [&](const auto& r, auto* page) {
                       return FromGrpc(client.fleet().ListDevices(client.Context().get(), r, page));
                     }));
    if (c.json()) return PrintJson(c, all);
    std::vector<const v1::Device*> devices;
    for (const auto& d : all.devices()) devices.push_back(&d);
    PrintDevices(devices, out);
    return absl::OkStatus();
  }
  if (verb == "show") {
    RETURN_IF_ERROR(Need(args, 3, "device show ID"));
    v1::GetDeviceRequest request;
    request.set_id(args.words[2]);
    v1::Device device;
    RETURN_IF_ERROR(FromGrpc(client.fleet().GetDevice(client.Context().get(), request, &device)));
    if (c.json()) return PrintJson(c, device);
    const v1::HardwareProfile& p = device.profile();
    Table table({"FIELD", "VALUE"});
    table.Add({"id", device.id()});
    table.Add({"serial", device.serial().empty() ? "-" : device.serial()});
    table.Add({"status", v1::DeviceStatus_Name(device.status())});
    table.Add({"online", device.online() ? "yes" : "no"});
    table.Add({"last seen", Time(device.last_seen_time())});
    table.Add({"enrolled", absl::StrCat(Time(device.enroll_time()), " with token ",
                                        device.enrollment_token_id())});
    table.Add({"certificate expires", Time(device.cert_expire_time())});
    table.Add({"labels", Pairs(device.labels())});
    table.Add({"target", p.target().empty() ? "-" : p.target()});
    table.Add({"cpu", absl::StrCat(p.arch(), ", ", p.cores(), " cores, ", p.cpu_model())});
    table.Add({"isa", absl::StrJoin(p.isa_features(), " ")});
    table.Add({"ram", absl::StrCat(p.ram_mb(), " MB")});
    table.Add({"storage", absl::StrCat(p.storage_mb(), " MB free of ", p.storage_total_mb())});
    for (const auto& a : p.accelerators())
      table.Add({"accelerator", absl::StrCat(a.kind(), " ", a.path())});
    table.Add({"os", absl::StrCat(p.os(), ", kernel ", p.kernel(), ", glibc ", p.glibc())});
    table.Add({"agent", device.state().agent_version().empty() ? p.agent_version()
                                                               : device.state().agent_version()});
    for (const auto& m : device.desired_modules()) {
      table.Add({"should run", absl::StrCat(m.model(), " v", m.version(), " (", m.target(), ", ",
                                            m.digest().substr(0, 19), ")")});
    }
    for (const auto& m : device.state().modules()) {
      table.Add(
          {"module", absl::StrCat(m.module().model(), " v", m.module().version(), " ", m.state())});
    }
    AddLastWindows(client, device.id(), table);
    out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "assign") {
    v1::AssignModelRequest request;
    request.set_model(args.Flag("model"));
    request.set_selector(args.Flag("selector"));
    request.set_device_id(args.Flag("device"));
    request.set_alias(args.Flag("alias"));
    if (args.Has("version")) {
      ASSIGN_OR_RETURN(int64_t version, Number(args.Flag("version"), "--version"));
      request.set_version(version);
    }
    if (request.model().empty()) {
      return absl::InvalidArgumentError(
          "usage: device assign (--selector SEL | --device ID) --model M (--version V | --alias "
          "A)");
    }
    v1::Assignment a;
    RETURN_IF_ERROR(FromGrpc(client.fleet().AssignModel(client.Context().get(), request, &a)));
    return Print(c, a, [&] {
      out << "assigned " << a.model() << " "
          << (a.alias().empty() ? absl::StrCat("version ", a.version())
                                : absl::StrCat("alias ", a.alias()))
          << " to "
          << (a.device_id().empty() ? "devices matching '" + a.selector() + "'"
                                    : "device " + a.device_id())
          << " (assignment " << a.id() << ")\n";
    });
  }
  if (verb == "rollback") {
    RETURN_IF_ERROR(Need(args, 3, "device rollback ID --model M"));
    v1::RollbackDeviceRequest request;
    request.set_id(args.words[2]);
    request.set_model(args.Flag("model"));
    v1::Assignment a;
    RETURN_IF_ERROR(FromGrpc(client.fleet().RollbackDevice(client.Context().get(), request, &a)));
    return Print(c, a, [&] {
      out << "device " << a.device_id() << " goes back to " << a.model() << " version "
          << a.version() << " (assignment " << a.id() << ")\n";
    });
  }
  if (verb == "assignments") {
    v1::ListAssignmentsRequest request;
    request.set_model(args.Flag("model"));
    ASSIGN_OR_RETURN(
        auto response,
        AllPages<v1::ListAssignmentsResponse>(request, [&](const auto& r, auto* page) {
          return FromGrpc(client.fleet().ListAssignments(client.Context().get(), r, page));
        }));
    if (c.json()) return PrintJson(c, response);
    Table table({"ID", "MODEL", "VERSION", "DEVICES", "BY", "AT"});
    for (const auto& a : response.assignments()) {
      table.Add({std::to_string(a.id()), a.model(),
                 a.alias().empty() ? std::to_string(a.version()) : "@" + a.alias(),
                 a.device_id().empty() ? a.selector() : "id=" + a.device_id(), a.created_by(),
                 Time(a.create_time())});
    }
    out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "label") {
    RETURN_IF_ERROR(Need(args, 4, "device label ID key=value ... key- ..."));
    v1::UpdateDeviceRequest request;
    request.set_id(args.words[2]);
    for (size_t i = 3; i < args.words.size(); ++i) {
      const std::string& w = args.words[i];
      if (w.size() > 1 && w.back() == '-' && w.find('=') == std::string::npos) {
        request.add_remove_labels(w.substr(0, w.size() - 1));
        continue;
      }
      ASSIGN_OR_RETURN(auto pair, ParsePairs({w}, "label"));
      request.mutable_labels()->insert(pair.begin(), pair.end());
    }
    v1::Device device;
    RETURN_IF_ERROR(
        FromGrpc(client.fleet().UpdateDevice(client.Context().get(), request, &device)));
    return Print(c, device,
                 [&] { out << device.id() << " labels: " << Pairs(device.labels()) << "\n"; });
  }
  if (verb == "decommission") {
    RETURN_IF_ERROR(Need(args, 3, "device decommission ID"));
    v1::DecommissionDeviceRequest request;
    request.set_id(args.words[2]);
    v1::Device device;
    RETURN_IF_ERROR(
        FromGrpc(client.fleet().DecommissionDevice(client.Context().get(), request, &device)));
    out << "decommissioned " << device.id() << "; its certificate is no longer accepted\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command \"device ", verb, "\" (see edgeloop --help)"));
}

}  // namespace edgeloop::cli
