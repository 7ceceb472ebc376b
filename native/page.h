// A mapped generation page: 4096 bytes shared by every process of a deployment.
#pragma once

#include <napi.h>

#include <cstdint>

namespace token_shadow {

constexpr size_t kPageSize = 4096;
constexpr size_t kMagicSize = 8;
constexpr uint32_t kSlotCount =
    (kPageSize - kMagicSize) / sizeof(uint64_t);  // 511

// First 8 bytes of sha256("token-shadow config-versions v1"), so a file of
// another program (or of a future incompatible layout) is never mistaken for
// ours. Regenerate with:
//   printf 'token-shadow config-versions v1' | sha256sum | cut -c1-16
extern const uint8_t kMagic[kMagicSize];

class Page : public Napi::ObjectWrap<Page> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Page(const Napi::CallbackInfo& info);
  ~Page() override;

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Increment(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value Faulted(const Napi::CallbackInfo& info);
  Napi::Value Lock(const Napi::CallbackInfo& info);
  Napi::Value Link(const Napi::CallbackInfo& info);
  uint64_t* SlotPointer(const Napi::CallbackInfo& info);
  void Unmap(bool detach);

  uint8_t* base_ = nullptr;
  int fd_ = -1;
  bool writable_ = false;
  int guard_ = -1;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

}  // namespace token_shadow
