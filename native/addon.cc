// Entry point of the token-shadow addon: registers the page class, the
// legacy crypt functions and the keyed digest.
#include <napi.h>

#include "digest.h"
#include "legacy_crypt.h"
#include "page.h"

namespace token_shadow {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativePage", Page::Define(env));
  exports.Set("slotCount", Napi::Number::New(env, kSlotCount));
  exports.Set("pageSize", Napi::Number::New(env, kPageSize));
  InitCrypt(env, exports);
  InitDigest(env, exports);
  return exports;
}

NODE_API_MODULE(token_shadow, Init)

}  // namespace token_shadow
