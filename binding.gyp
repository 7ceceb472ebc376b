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
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "OPENSSL_SUPPRESS_DEPRECATED"
      ],
      "cflags_cc": ["-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lcrypt"]
    }
  ]
}
