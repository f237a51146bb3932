#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace edgeloop::server::grpc_api {

/// Caps the streams (Watch and FetchModule) one device holds open at once, across every
/// connection it makes: a device, or a stolen device certificate, cannot take the server's
/// stream capacity for itself. Thread-safe.
class DeviceStreamLimit {
 public:
  explicit DeviceStreamLimit(int per_device) : per_device_(per_device) {}

  /// Held while the stream is open; releasing it frees the device's slot.
  class Slot {
   public:
    ~Slot() { limit_->Release(device_); }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    friend class DeviceStreamLimit;
    Slot(DeviceStreamLimit* limit, std::string device)
        : limit_(limit), device_(std::move(device)) {}
    DeviceStreamLimit* limit_;
    std::string device_;
  };

  /// A slot, or null when the device already holds `per_device` streams.
  std::unique_ptr<Slot> Acquire(const std::string& device) {
    std::lock_guard lock(mu_);
    int& open = open_[device];
    if (open >= per_device_) return nullptr;
    ++open;
    return std::unique_ptr<Slot>(new Slot(this, device));
  }

  int per_device() const { return per_device_; }

 private:
  void Release(const std::string& device) {
    std::lock_guard lock(mu_);
    auto it = open_.find(device);
    if (--it->second == 0) open_.erase(it);  // no entry per device ever seen: bounded memory
  }

  const int per_device_;
  std::mutex mu_;
  std::map<std::string, int> open_;
};

}  // namespace edgeloop::server::grpc_api
