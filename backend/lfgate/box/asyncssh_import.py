"""asyncssh, imported without cryptography's DSA deprecation warnings.

cryptography 51 deprecates DSA, and asyncssh (2.24) names the DSA key classes in its type
hints at import, so every `import asyncssh` printed five CryptographyDeprecationWarning blocks
on stderr before the gateway said anything. We never use DSA keys (nor do OpenSSH's defaults
since 7.0), so exactly those warnings, raised from asyncssh's own modules, are ignored here; any
other warning, and any warning of any other package, still shows. Import asyncssh from this
module (`from lfgate.box.asyncssh_import import asyncssh`), never directly: the filter must be
in place before asyncssh's first import.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings("ignore", message="DSA is deprecated",
                        category=CryptographyDeprecationWarning, module=r"asyncssh(\.|$)")

import asyncssh  # noqa: E402  (after the filter, on purpose)

__all__ = ["asyncssh"]
