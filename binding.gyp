{
  "targets": [
    {
      "target_name": "token_shadow",
      "sources": [
        "native/addon.cc",
        "native/page.cc",
        "native/legacy_crypt.cc",
        "native/digest.cc",
        "native/sigbus_guard.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: an addon call that fails while
      # its thread's environment is being torn down (a hash-pool worker
      # terminated mid-crypt) returns instead of throwing a second C++
      # exception out of node-addon-api's catch handler (std::terminate: the
      # whole process aborted with "terminate called ... Napi::Error").
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "OPENSSL_SUPPRESS_DEPRECATED"
      ],
      "cflags_cc": ["-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lcrypt"]
    }
  ]
}
