"""Numbers and names fixed by Xen's ACM (sHype) in Xen 3.3, kept in one place.

Why a module of its own: the binary policy, the map file, the mediation module and the XSM API
must all agree on these values, and most of them are visible to users (error codes, ssidrefs,
label strings).  Values are taken from Xen 3.3's ``acm.h``, ``acm_core.h`` and ``xsconstants.py``.
"""

from __future__ import annotations

# --- the XML format ------------------------------------------------------------------------
POLICY_NS = "http://www.ibm.com"
ROOT_TAG = "SecurityPolicyDefinition"
POLICY_FILE_SUFFIX = "-security_policy.xml"

# Reserved label / type names.
UNLABELED = "__UNLABELED__"  # unlabeled domains and resources behave as if they carried it
NULL_LABEL = "__NULL_LABEL__"  # name of ssid 0 in the map when the policy has no __UNLABELED__
INACCESSIBLE = "__INACCESSIBLE__"  # resource label that makes a resource unusable
RESERVED_LABELS = frozenset({UNLABELED, NULL_LABEL, INACCESSIBLE})
UNLABELED_DISPLAY = "unlabeled"

DEFAULT_POLICY_NAME = "DEFAULT"

# --- binary policy (acm.h, Xen 3.3) --------------------------------------------------------
ACM_MAGIC = 0x0001DEBC
ACM_POLICY_VERSION = 4
ACM_CHWALL_VERSION = 1
ACM_STE_VERSION = 1
ACM_INTERFACE_VERSION = 0xAAAA000A

ACM_NULL_POLICY = 0
ACM_CHINESE_WALL_POLICY = 1
ACM_SIMPLE_TYPE_ENFORCEMENT_POLICY = 2
ACM_POLICY_UNDEFINED = 15
ACM_CHINESE_WALL_AND_SIMPLE_TYPE_ENFORCEMENT_POLICY = (2 << 4) | 1

ACM_DEFAULT_SSID = 0
ACM_INVALID_SSIDREF = 0xFFFFFFFF
ACM_MAX_NUM_TYPES = 256
ACM_SHA1_HASH_SIZE = 20
ACM_TE_CACHE_SIZE = 8
MAX_SSID_INDEX = 0xFFFF  # each half of an ssidref is a 16-bit row index

# Decision hooks callable from Domain-0 (ACMOP_getdecision).
ACMHOOK_NONE = 0
ACMHOOK_SHARING = 1
ACMHOOK_AUTHORIZATION = 2
ACMHOOK_CONFLICTSET = 3

# (code, detail) tuples a policy change reports (acm_ops.h).
ACM_EVTCHN_SHARING_VIOLATION = 0x100
ACM_GNTTAB_SHARING_VIOLATION = 0x101
ACM_DOMAIN_LOOKUP = 0x102
ACM_CHWALL_CONFLICT = 0x103
ACM_SSIDREF_IN_USE = 0x104

ACM_ACCESS_PERMITTED = 0
ACM_ACCESS_DENIED = -111

# --- XSM / Xen-API (xsconstants.py) --------------------------------------------------------
XS_POLICY_NONE = 0
XS_POLICY_ACM = 1 << 0
XS_INST_NONE = 0
XS_INST_BOOT = 1 << 0
XS_INST_LOAD = 1 << 1

ACM_LABEL_VM = 1 << 0
ACM_LABEL_RES = 1 << 1
ACM_LABEL_ANY = ACM_LABEL_VM | ACM_LABEL_RES

ACM_POLICY_ID = "ACM"
INVALID_POLICY_PREFIX = "INV_"
INACCESSIBLE_POLICY = "*"  # an __INACCESSIBLE__ resource label is stored with this policy name

# Policy components, as the XSM API names them.
STE = "STE"
CHWALL = "CHWALL"
COMPONENTS = (STE, CHWALL)
