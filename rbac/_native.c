/* rbac._native: RbacPolicy.decide() answered without leaving C.
 *
 * Why this exists.  RbacPolicy.decide() in pure Python is a handful of dict lookups, but with
 * 10k users and 100k objects drawn at random every one of those lookups misses the CPU caches:
 * a Python dict lookup with a freshly built key touches the index table, the entry table, the
 * stored key object and the value object, and the engine needs three or four of them.  At
 * ~100 ns a miss the pure-Python floor is ~1.8 us.  This index keeps the same facts in flat C
 * arrays laid out so that one decision touches about half as many cache lines:
 *
 *   users    open-addressing table  name -> profile number (+ the validity window of a user
 *            with expiring assignments)            (hash, name and value in one 24-byte slot:
 *            a name of up to 11 one-byte characters is compared in the slot itself)
 *   objects  open-addressing table  name -> run of entries   (hash, name, first entry, count)
 *   entries  per object, sorted by role number: role, its "needs authentication" flag, the
 *            operations 0..63 it grants as a bit mask, and the {operation: grant} dict
 *            (touched only to fetch the grant of an allowed decision, or to test an operation
 *            id above 63)
 *   profiles one block per distinct set of roles: the roles with by-name grants in preference
 *            order (role number, name, inheritance path, group reason), the same sorted by role
 *            number (for users with very many roles: then the object's few roles are walked
 *            and looked up in the profile), and the scoped grants (all / pattern / label /
 *            owned) per operation, in the order the Python engine tests them
 *   groups   user -> (profile through their Unix groups, valid until): filled by the Python
 *            engine each time it asks NSS (rbac.groups), valid exactly as long as the
 *            resolver's cached answer it came from, so a membership change is seen when that
 *            cache expires, never later
 *
 * Partitions (a separate type the caller owns, and Index.decide_in/partitioned): a check
 * run before the decision -- the object's partition (an attribute) among the user's, told
 * with a deadline, the operation allowed there -- so that a caller's own check of that kind
 * and the decision are one C call; whatever it cannot tell is handed back (see there).
 *
 * It answers what RbacPolicy._decide() answers, case by case: the caller's record (their own,
 * or the one with their groups' roles when a group role could grant the request at all); the
 * by-name grants, then the scoped grants, preferring a grant that needs no authentication,
 * then the nearest role; a plain denial for an operation of the catalogue (worded when read,
 * also for a user without a record or without roles).  Whatever it does
 * not know how to answer exactly -- a negative operation id, arguments of other types,
 * attrs that are not a dict, an expired validity window, an
 * unknown selector kind, a group answer it does not hold -- goes, unchanged, to the Python
 * fallback (RbacPolicy._decide), which answers every case.  tests/rbac/test_native*.py hold
 * the two to identical Decisions on random policies with every scope kind and groups.
 *
 * Memory ownership: the C arrays hold borrowed pointers; every object they point to is kept
 * alive by the `owned` list (the group table holds its own references).  The index references
 * the policy (for denial texts) and the policy references the index (its `decide` attribute),
 * so the type takes part in garbage collection.  A profile block never moves once made, so a
 * decision holding a pointer to it survives another thread adding profiles meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* the interface version rbac.engine checks, so a stale build is not called the wrong way */
#define API_VERSION 3
/* operations 0..MASKED-1 are tested in 64-bit masks; higher ids in the grant dicts */
#define MASKED 64
/* beyond this many remembered users the group table starts afresh (bounded memory) */
#define GROUP_CACHE_MAX 65536
/* a user's slot.b for a <User> entry holding no role */
#define NO_ROLES UINT32_MAX

/* A name of at most INLINE_MAX one-byte characters is kept in its slot (compared there,
 * without touching the str object: one cache miss less per lookup); a longer one by
 * reference (kept alive by `owned`). */
#define INLINE_MAX 11
#define TAG_EMPTY 0
#define TAG_REF 0xFF /* tag 1 + n: n inline characters */

typedef struct {
    uint32_t hash; /* low bits of the str's hash */
    uint32_t a;    /* users: profile number; objects: first entry */
    uint32_t b;    /* users: 0, 1 + window number, or NO_ROLES; objects: number of entries */
    uint8_t tag;
    char text[INLINE_MAX]; /* the name, or (TAG_REF) a PyObject * to it */
} Slot;

typedef struct {
    Slot *slots;
    size_t mask;
} Table;

typedef struct {
    uint32_t role;
    uint32_t auth;
    uint64_t ops; /* operations 0..63 it grants (higher ids: look in opmap) */
    PyObject *opmap;
} Entry;

typedef struct {
    uint32_t role;
    PyObject *name;
    PyObject *via;
    PyObject *reason; /* NULL: the grant words the reason itself */
} Member;

typedef struct {
    uint32_t role;
    uint32_t rank;
} ByRole;

enum { K_ALL, K_GLOB, K_MATCH, K_ATTR, K_OWNED, K_PYTHON, K_COUNT };

typedef struct {
    long op; /* read for operations >= MASKED only */
    int kind;
    int auth;
    PyObject *name, *via, *reason, *grant;
    PyObject *a; /* K_GLOB: the pattern; K_MATCH: a compiled regex's match; K_ATTR/K_OWNED: key */
    PyObject *b; /* K_ATTR: the value */
} Scoped;

typedef struct {
    uint32_t n_members, n_scoped;
    Member *members;    /* preference order */
    ByRole *byrole;     /* sorted by role number */
    /* MASKED + 1 offsets into scoped, per operation 0..63, then the grants of higher ids
     * (tested by their op) up to n_scoped; NULL when there is none */
    uint32_t *op_start;
    Scoped *scoped;
} Prof;

typedef struct {
    PyObject *key; /* NULL: empty */
    Py_hash_t hash;
    double until;
    int32_t profile; /* >= 0: that profile; -1: the user's own record; -2: ask Python */
} GEntry;

typedef struct {
    PyObject_HEAD
    Table users;
    Table objects;
    Entry *entries;
    Prof **profiles;
    double *windows; /* lo, hi per expiring user */
    Py_ssize_t n_users, n_objects, n_entries, n_profiles, cap_profiles, n_windows, n_roles;
    Py_ssize_t profile_bytes;
    uint64_t *known; /* bit k: a miss of operation k is a plain denial */
    Py_ssize_t known_words; /* -1: every operation id is known (no catalogue) */
    int32_t group_any; /* profile of every role some group holds; -1: no group roles */
    GEntry *groups;
    size_t gmask;
    Py_ssize_t gcount;
    PyObject *clock; /* NULL: CLOCK_MONOTONIC (time.monotonic) */
    PyObject *unknown;  /* reason of a denial to a user without a record (NULL: Python's) */
    PyObject *no_roles; /* reason of a denial to a user whose record holds no role */
    PyObject *fallback;
    PyObject *policy;
    PyTypeObject *decision;
    PyObject *owned;
    int ready; /* set once __init__ has built every table; a failed build leaves it 0 */
} Index;

/* -- string tables ------------------------------------------------------------------------- */

static inline int
same_str(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    if (n != PyUnicode_GET_LENGTH(b) || kind != (int)PyUnicode_KIND(b))
        return 0;
    return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * (size_t)kind) == 0;
}

static inline PyObject *
slot_ref(const Slot *s)
{
    PyObject *k;
    memcpy(&k, s->text, sizeof k);
    return k;
}

/* Is `key` (an exact, ready str with hash h) the name in slot `s`? */
static inline int
slot_is(const Slot *s, PyObject *key, Py_hash_t h)
{
    if (s->hash != (uint32_t)h)
        return 0;
    if (s->tag == TAG_REF)
        return same_str(slot_ref(s), key);
    Py_ssize_t n = s->tag - 1;
    return PyUnicode_KIND(key) == PyUnicode_1BYTE_KIND && PyUnicode_GET_LENGTH(key) == n &&
           memcmp(s->text, PyUnicode_DATA(key), (size_t)n) == 0;
}

/* Does `key` fit in a slot?  (Then no reference to it needs keeping.) */
static inline int
key_inline(PyObject *key)
{
    return PyUnicode_KIND(key) == PyUnicode_1BYTE_KIND && PyUnicode_GET_LENGTH(key) <= INLINE_MAX;
}

static inline Slot *
table_find(const Table *t, PyObject *key, Py_hash_t h)
{
    if (t->slots == NULL)
        return NULL;
    size_t i = (size_t)h & t->mask;
    for (;;) {
        Slot *s = &t->slots[i];
        if (s->tag == TAG_EMPTY)
            return NULL;
        if (slot_is(s, key, h))
            return s;
        i = (i + 1) & t->mask;
    }
}

/* The slot of `key`, inserted empty (a = b = 0) if absent; *fresh tells which. */
static Slot *
table_slot(Table *t, PyObject *key, Py_hash_t h, int *fresh)
{
    size_t i = (size_t)h & t->mask;
    for (;;) {
        Slot *s = &t->slots[i];
        if (s->tag == TAG_EMPTY) {
            s->hash = (uint32_t)h;
            if (key_inline(key)) {
                s->tag = (uint8_t)(1 + PyUnicode_GET_LENGTH(key));
                memcpy(s->text, PyUnicode_DATA(key), (size_t)PyUnicode_GET_LENGTH(key));
            }
            else {
                s->tag = TAG_REF;
                memcpy(s->text, &key, sizeof key);
            }
            *fresh = 1;
            return s;
        }
        if (slot_is(s, key, h)) {
            *fresh = 0;
            return s;
        }
        i = (i + 1) & t->mask;
    }
}

static int
table_init(Table *t, Py_ssize_t n)
{
    size_t size = 8;
    while (size < (size_t)n * 2) /* load factor <= 1/2: short probe runs */
        size <<= 1;
    t->slots = PyMem_Calloc(size, sizeof(Slot));
    if (t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->mask = size - 1;
    return 0;
}

_Static_assert(sizeof(Slot) == 24, "a slot is 24 bytes");
_Static_assert(sizeof(PyObject *) <= INLINE_MAX, "a reference fits in a slot");

/* A key usable in a table: an exact, ready str, kept alive by `owned` unless it fits in
 * its slot. */
static Py_hash_t
owned_key(Index *self, PyObject *key, const char *what)
{
    if (!PyUnicode_CheckExact(key)) {
        PyErr_Format(PyExc_TypeError, "%s names must be str, not %.100s", what,
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    if (PyUnicode_READY(key) < 0 || (!key_inline(key) && PyList_Append(self->owned, key) < 0))
        return -1;
    return PyObject_Hash(key);
}

static int
keep(Index *self, PyObject *o)
{
    return o == NULL ? 0 : PyList_Append(self->owned, o);
}

/* -- clocks -------------------------------------------------------------------------------- */

static double
clock_read(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return NAN;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* How far ahead of CLOCK_MONOTONIC_COARSE the exact clock may be, with room to spare: the
 * coarse clock is the exact one as of the last tick (never ahead of it), so an answer is
 * taken as still valid only while coarse + COARSE_MARGIN < its expiry, and is then valid by
 * the exact clock too.  Near its end (the last 50 ms of a 5 s answer) Python is asked. */
static double coarse_margin = -1.0; /* < 0: no coarse clock, read the exact one */

static void
coarse_init(void)
{
    struct timespec res;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 && res.tv_sec == 0) {
        double tick = (double)res.tv_nsec * 1e-9;
        coarse_margin = 2 * tick > 0.05 ? 2 * tick : 0.05;
    }
}

/* The group resolver's clock, advanced by the coarse clock's margin when that is what is
 * read (NAN, with no exception set, if it cannot be read).  time.monotonic is
 * CLOCK_MONOTONIC: read here without a Python call (~4 ns coarse, against ~40 exact). */
static double
group_clock(Index *self)
{
    if (self->clock == NULL) {
        if (coarse_margin >= 0)
            return clock_read(CLOCK_MONOTONIC_COARSE) + coarse_margin;
        return clock_read(CLOCK_MONOTONIC);
    }
    PyObject *r = PyObject_CallNoArgs(self->clock);
    double t = r == NULL ? -1.0 : PyFloat_AsDouble(r);
    Py_XDECREF(r);
    if (t == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return NAN;
    }
    return t;
}

/* -- profiles ------------------------------------------------------------------------------ */

static int
byrole_cmp(const void *x, const void *y)
{
    uint32_t a = ((const ByRole *)x)->role, b = ((const ByRole *)y)->role;
    return a < b ? -1 : a > b;
}

/* A profile from (members, scoped):
 *   members  tuple of (role number, role name, via tuple, reason or None), preference order
 *   scoped   tuple of (op, kind, needs_auth, role name, via, reason or None, grant, a, b) in
 *            the order the Python engine tests them; a negative op is left out (such an
 *            operation always goes to Python) */
static Prof *
profile_make(Index *self, PyObject *desc, Py_ssize_t n_roles)
{
    PyObject *members, *scoped;
    if (!PyArg_ParseTuple(desc, "O!O!;a profile is (members tuple, scoped tuple)", &PyTuple_Type,
                          &members, &PyTuple_Type, &scoped))
        return NULL;
    Py_ssize_t nm = PyTuple_GET_SIZE(members), ns = 0;
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(scoped); j++) {
        PyObject *it = PyTuple_GET_ITEM(scoped, j);
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 9 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(it, 0))) {
            PyErr_SetString(PyExc_TypeError,
                            "a scoped grant is (op, kind, needs_auth, role, via, reason, grant, a, "
                            "b)");
            return NULL;
        }
        long op = PyLong_AsLong(PyTuple_GET_ITEM(it, 0));
        if (op == -1 && PyErr_Occurred())
            PyErr_Clear();
        else if (op >= 0)
            ns++;
    }
    if (nm > UINT32_MAX / 2 || ns > UINT32_MAX / 2) {
        PyErr_SetString(PyExc_OverflowError, "profile too large");
        return NULL;
    }
    size_t size = sizeof(Prof) + (size_t)nm * sizeof(Member) + (size_t)ns * sizeof(Scoped) +
                  (size_t)nm * sizeof(ByRole) + (ns ? (MASKED + 1) * sizeof(uint32_t) : 0);
    Prof *p = PyMem_Calloc(1, size);
    if (p == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    char *at = (char *)(p + 1);
    p->members = (Member *)at;
    at += (size_t)nm * sizeof(Member);
    p->scoped = (Scoped *)at;
    at += (size_t)ns * sizeof(Scoped);
    p->byrole = (ByRole *)at;
    at += (size_t)nm * sizeof(ByRole);
    p->op_start = ns ? (uint32_t *)at : NULL;
    p->n_members = (uint32_t)nm;
    p->n_scoped = (uint32_t)ns;
    self->profile_bytes += (Py_ssize_t)size;
    for (Py_ssize_t j = 0; j < nm; j++) {
        long role;
        PyObject *name, *via, *reason, *m = PyTuple_GET_ITEM(members, j);
        if (!PyTuple_Check(m)) {
            PyErr_SetString(PyExc_TypeError, "a profile member is a tuple");
            goto fail;
        }
        if (!PyArg_ParseTuple(m, "lUO!O;a profile member is "
                              "(role number, role name, via tuple, reason or None)",
                              &role, &name, &PyTuple_Type, &via, &reason))
            goto fail;
        if (role < 0 || role >= n_roles) {
            PyErr_Format(PyExc_ValueError, "profile member %R: no role %ld", name, role);
            goto fail;
        }
        if (keep(self, name) < 0 || keep(self, via) < 0 || keep(self, reason) < 0)
            goto fail;
        p->members[j] = (Member){(uint32_t)role, name, via, reason == Py_None ? NULL : reason};
        p->byrole[j] = (ByRole){(uint32_t)role, (uint32_t)j};
    }
    qsort(p->byrole, (size_t)nm, sizeof(ByRole), byrole_cmp);
    if (ns) {
        /* counting sort by operation, stable: each operation keeps the engine's order; the
         * higher ids after them in their own order (count[MASKED] is where they start) */
        uint32_t count[MASKED + 1] = {0};
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(scoped); j++) {
            long op = PyLong_AsLong(PyTuple_GET_ITEM(PyTuple_GET_ITEM(scoped, j), 0));
            if (op == -1 && PyErr_Occurred())
                PyErr_Clear();
            else if (op >= 0 && op < MASKED)
                count[op + 1]++;
        }
        for (int k = 0; k < MASKED; k++)
            count[k + 1] += count[k];
        memcpy(p->op_start, count, sizeof(count));
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(scoped); j++) {
            PyObject *it = PyTuple_GET_ITEM(scoped, j), *name, *via, *reason, *grant, *a, *b,
                     *auth;
            long op, kind;
            if (!PyArg_ParseTuple(it, "llO!UO!OOOO;a scoped grant is (op, kind, needs_auth, "
                                  "role, via, reason, grant, a, b)",
                                  &op, &kind, &PyBool_Type, &auth, &name, &PyTuple_Type, &via,
                                  &reason, &grant, &a, &b))
                goto fail;
            if (op < 0)
                continue;
            if (kind < 0 || kind >= K_COUNT) {
                PyErr_Format(PyExc_ValueError, "scoped grant of %R: no selector kind %ld", name,
                             kind);
                goto fail;
            }
            int ok = 1;
            if (kind == K_GLOB || kind == K_ATTR || kind == K_OWNED)
                ok = PyUnicode_CheckExact(a) && PyUnicode_READY(a) == 0;
            if (ok && kind == K_ATTR)
                ok = PyUnicode_CheckExact(b) && PyUnicode_READY(b) == 0;
            if (ok && kind == K_MATCH)
                ok = PyCallable_Check(a);
            if (!ok) {
                PyErr_Format(PyExc_TypeError, "scoped grant of %R: bad selector data", name);
                goto fail;
            }
            if (keep(self, name) < 0 || keep(self, via) < 0 || keep(self, reason) < 0 ||
                keep(self, grant) < 0 || keep(self, a) < 0 || keep(self, b) < 0)
                goto fail;
            uint32_t at = op < MASKED ? count[op]++ : count[MASKED]++;
            p->scoped[at] = (Scoped){op,    (int)kind, auth == Py_True, name, via,
                                     reason == Py_None ? NULL : reason, grant, a,    b};
        }
    }
    return p;
fail:
    PyMem_Free(p);
    return NULL;
}

static int
profile_add(Index *self, Prof *p)
{
    if (self->n_profiles == self->cap_profiles) {
        Py_ssize_t cap = self->cap_profiles ? self->cap_profiles * 2 : 16;
        Prof **grown = PyMem_Realloc(self->profiles, (size_t)cap * sizeof(Prof *));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->profiles = grown;
        self->cap_profiles = cap;
    }
    self->profiles[self->n_profiles++] = p;
    return 0;
}

/* -- construction -------------------------------------------------------------------------- */

static int
load_profiles(Index *self, PyObject *profiles, Py_ssize_t n_roles)
{
    if (!PyList_Check(profiles)) {
        PyErr_SetString(PyExc_TypeError, "profiles must be a list of (members, scoped)");
        return -1;
    }
    if (PyList_GET_SIZE(profiles) >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many profiles");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(profiles); i++) {
        PyObject *d = PyList_GET_ITEM(profiles, i);
        if (!PyTuple_Check(d)) {
            PyErr_SetString(PyExc_TypeError, "a profile must be a tuple (members, scoped)");
            return -1;
        }
        Prof *p = profile_make(self, d, n_roles);
        if (p == NULL)
            return -1;
        if (profile_add(self, p) < 0) {
            PyMem_Free(p);
            return -1;
        }
    }
    return 0;
}

/* users: {name: profile number}, {name: (profile number, valid from, valid until)} for
 * expiring assignments, or {name: (profile number, None, None)} for an entry without roles */
static int
load_users(Index *self, PyObject *users)
{
    if (!PyDict_Check(users)) {
        PyErr_SetString(PyExc_TypeError, "users must be a dict {name: profile number}");
        return -1;
    }
    self->n_users = PyDict_GET_SIZE(users);
    if (table_init(&self->users, self->n_users) < 0)
        return -1;
    Py_ssize_t pos = 0, windows = 0;
    PyObject *name, *val;
    while (PyDict_Next(users, &pos, &name, &val))
        windows += PyTuple_Check(val);
    self->windows = PyMem_Calloc((size_t)windows * 2 + 2, sizeof(double));
    if (self->windows == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    pos = 0;
    while (PyDict_Next(users, &pos, &name, &val)) {
        Py_hash_t h = owned_key(self, name, "user");
        if (h == -1)
            return -1;
        PyObject *num = val;
        double lo = 0, hi = 0;
        int windowed = PyTuple_Check(val), empty = 0;
        if (windowed && PyTuple_GET_SIZE(val) == 3 && PyTuple_GET_ITEM(val, 1) == Py_None &&
            PyTuple_GET_ITEM(val, 2) == Py_None) {
            num = PyTuple_GET_ITEM(val, 0);
            windowed = 0;
            empty = 1;
        }
        else if (windowed) {
            if (PyTuple_GET_SIZE(val) != 3 || !PyFloat_CheckExact(PyTuple_GET_ITEM(val, 1)) ||
                !PyFloat_CheckExact(PyTuple_GET_ITEM(val, 2)) || self->n_windows >= windows) {
                PyErr_Format(PyExc_TypeError,
                             "user %R: a window is (profile number, from: float, until: float)",
                             name);
                return -1;
            }
            num = PyTuple_GET_ITEM(val, 0);
            lo = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(val, 1));
            hi = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(val, 2));
        }
        if (!PyLong_CheckExact(num)) { /* no __index__: no Python code runs mid-iteration */
            PyErr_Format(PyExc_TypeError, "user %R: profile number must be an int", name);
            return -1;
        }
        long p = PyLong_AsLong(num);
        if (p == -1 && PyErr_Occurred())
            return -1;
        if (p < 0 || p >= self->n_profiles) {
            PyErr_Format(PyExc_ValueError, "user %R: no profile %ld", name, p);
            return -1;
        }
        int fresh;
        Slot *s = table_slot(&self->users, name, h, &fresh);
        s->a = (uint32_t)p;
        s->b = empty ? NO_ROLES : 0;
        if (windowed) {
            self->windows[2 * self->n_windows] = lo;
            self->windows[2 * self->n_windows + 1] = hi;
            s->b = (uint32_t)++self->n_windows;
        }
    }
    return 0;
}

/* Operations 0..63 of an {operation: grant} dict, as a bit mask (higher ids: the dict). */
static uint64_t
op_mask(PyObject *opmap)
{
    uint64_t mask = 0;
    Py_ssize_t pos = 0;
    PyObject *op, *grant;
    while (PyDict_Next(opmap, &pos, &op, &grant)) {
        if (!PyLong_CheckExact(op))
            continue;
        int overflow;
        long v = PyLong_AsLongAndOverflow(op, &overflow);
        if (!overflow && v >= 0 && v < MASKED)
            mask |= (uint64_t)1 << v;
    }
    return mask;
}

/* roles: list indexed by role number of (needs_auth, {object: {operation: grant}}). */
static int
load_objects(Index *self, PyObject *roles)
{
    Py_ssize_t n_roles = PyList_GET_SIZE(roles);
    Py_ssize_t total = 0;
    for (Py_ssize_t r = 0; r < n_roles; r++) {
        PyObject *item = PyList_GET_ITEM(roles, r), *auth, *objmap;
        if (!PyTuple_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "a role is a tuple (needs_auth, objects)");
            return -1;
        }
        if (!PyArg_ParseTuple(item, "O!O!;a role is (needs_auth: bool, {object: {op: grant}})",
                              &PyBool_Type, &auth, &PyDict_Type, &objmap))
            return -1;
        total += PyDict_GET_SIZE(objmap);
    }
    if (total >= UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many (object, role) pairs");
        return -1;
    }
    /* first pass: every object once, counting its roles (slot.b) */
    if (table_init(&self->objects, total) < 0)
        return -1;
    for (Py_ssize_t r = 0; r < n_roles; r++) {
        PyObject *objmap = PyTuple_GET_ITEM(PyList_GET_ITEM(roles, r), 1), *name, *opmap;
        Py_ssize_t pos = 0;
        while (PyDict_Next(objmap, &pos, &name, &opmap)) {
            if (!PyDict_Check(opmap)) {
                PyErr_Format(PyExc_TypeError, "object %R: grants must be a dict", name);
                return -1;
            }
            if (!PyUnicode_CheckExact(name)) {
                PyErr_Format(PyExc_TypeError, "object names must be str, not %.100s",
                             Py_TYPE(name)->tp_name);
                return -1;
            }
            Py_hash_t h = PyUnicode_READY(name) < 0 ? -1 : PyObject_Hash(name);
            if (h == -1)
                return -1;
            int fresh;
            Slot *s = table_slot(&self->objects, name, h, &fresh);
            if (fresh) {
                if (!key_inline(name) && PyList_Append(self->owned, name) < 0)
                    return -1;
                self->n_objects++;
            }
            s->b++;
        }
    }
    /* runs of entries: slot.a = first entry, then fill in role order (runs come out sorted) */
    self->entries = PyMem_Calloc((size_t)total + 1, sizeof(Entry));
    if (self->entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t next = 0;
    for (size_t i = 0; i <= self->objects.mask; i++) {
        Slot *s = &self->objects.slots[i];
        if (s->tag != TAG_EMPTY) {
            s->a = next;
            next += s->b;
            s->b = 0;
        }
    }
    for (Py_ssize_t r = 0; r < n_roles; r++) {
        PyObject *item = PyList_GET_ITEM(roles, r);
        int auth = PyTuple_GET_ITEM(item, 0) == Py_True;
        PyObject *objmap = PyTuple_GET_ITEM(item, 1), *name, *opmap;
        Py_ssize_t pos = 0;
        while (PyDict_Next(objmap, &pos, &name, &opmap)) {
            Slot *s = table_find(&self->objects, name, PyObject_Hash(name));
            if (s == NULL || s->a + s->b >= (uint32_t)total) { /* changed since pass 1 */
                PyErr_SetString(PyExc_RuntimeError, "grants changed while the index was built");
                return -1;
            }
            if (PyList_Append(self->owned, opmap) < 0)
                return -1;
            Entry *e = &self->entries[s->a + s->b++];
            e->role = (uint32_t)r;
            e->auth = (uint32_t)auth;
            e->opmap = opmap;
            e->ops = op_mask(opmap);
        }
    }
    self->n_entries = total;
    return 0;
}

static int
Index_init(Index *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback",  "policy", "decision", "users",    "profiles", "roles",
                             "known_ops", "group_any", "clock", "unknown", "no_roles", NULL};
    PyObject *fallback, *policy, *decision, *users, *profiles, *roles, *known;
    PyObject *clock = Py_None, *unknown = Py_None, *no_roles = Py_None;
    int group_any = -1;
    if (self->owned != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "an Index is built once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!OOO!O|$iOOO:Index", kwlist, &fallback,
                                     &policy, &PyType_Type, &decision, &users, &profiles,
                                     &PyList_Type, &roles, &known, &group_any,
                                     &clock, &unknown, &no_roles))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    if (clock != Py_None && !PyCallable_Check(clock)) {
        PyErr_SetString(PyExc_TypeError, "clock must be callable or None");
        return -1;
    }
    if (!PyType_IsSubtype((PyTypeObject *)decision, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "decision must be a tuple subclass");
        return -1;
    }
    /* known_ops: the operations a miss denies outright, as a bit mask (bit k: operation k)
     * of any length; None: every operation id (a policy without a catalogue) */
    if (known == Py_None)
        self->known_words = -1;
    else {
        PyObject *zero = PyLong_FromLong(0);
        int negative = zero == NULL ? -1 : PyObject_RichCompareBool(known, zero, Py_LT);
        Py_XDECREF(zero);
        if (negative < 0)
            return -1;
        if (!PyLong_CheckExact(known) || negative) {
            PyErr_SetString(PyExc_TypeError, "known_ops must be a non-negative int or None");
            return -1;
        }
        PyObject *nbits = PyObject_CallMethod(known, "bit_length", NULL);
        Py_ssize_t bits = nbits == NULL ? -1 : PyLong_AsSsize_t(nbits);
        Py_XDECREF(nbits);
        if (bits < 0)
            return -1;
        Py_ssize_t words = bits / 64 + 1;
        self->known = PyMem_Calloc((size_t)words, sizeof(uint64_t));
        if (self->known == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        PyObject *rest = known, *sixty_four = PyLong_FromLong(64);
        if (sixty_four == NULL)
            return -1;
        Py_INCREF(rest);
        for (Py_ssize_t w = 0; w < words && rest != NULL; w++) {
            self->known[w] = PyLong_AsUnsignedLongLongMask(rest);
            PyObject *next = PyErr_Occurred() ? NULL : PyNumber_Rshift(rest, sixty_four);
            Py_DECREF(rest);
            rest = next;
        }
        Py_DECREF(sixty_four);
        if (rest == NULL)
            return -1;
        Py_DECREF(rest);
        self->known_words = words;
    }
    self->owned = PyList_New(0);
    if (self->owned == NULL)
        return -1;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(policy);
    self->policy = policy;
    Py_INCREF(decision);
    self->decision = (PyTypeObject *)decision;
    if (clock != Py_None) {
        Py_INCREF(clock);
        self->clock = clock;
    }
    if (unknown != Py_None) {
        Py_INCREF(unknown);
        self->unknown = unknown;
    }
    if (no_roles != Py_None) {
        Py_INCREF(no_roles);
        self->no_roles = no_roles;
    }
    self->n_roles = PyList_GET_SIZE(roles);
    if (load_profiles(self, profiles, self->n_roles) < 0 ||
        load_users(self, users) < 0 || load_objects(self, roles) < 0)
        return -1;
    if (group_any < -1 || group_any >= self->n_profiles) {
        PyErr_Format(PyExc_ValueError, "group_any: no profile %d", group_any);
        return -1;
    }
    self->group_any = group_any;
    self->ready = 1;
    return 0;
}

/* "" and (): the rule and path of a plain denial, made once at import */
static PyObject *empty_str, *empty_tuple, *str_attrs, *str_now;

/* -- the group table ----------------------------------------------------------------------- */

static void
groups_clear(Index *self)
{
    if (self->groups != NULL) {
        for (size_t i = 0; i <= self->gmask; i++)
            Py_XDECREF(self->groups[i].key);
        PyMem_Free(self->groups);
    }
    self->groups = NULL;
    self->gmask = 0;
    self->gcount = 0;
}

static const GEntry *
groups_find(const Index *self, PyObject *key, Py_hash_t h)
{
    if (self->groups == NULL)
        return NULL;
    size_t i = (size_t)h & self->gmask;
    for (;;) {
        const GEntry *e = &self->groups[i];
        if (e->key == NULL)
            return NULL;
        if (e->hash == h && same_str(e->key, key))
            return e;
        i = (i + 1) & self->gmask;
    }
}

/* Insert or replace (the key's reference is taken when it is new). */
static int
groups_put(Index *self, PyObject *key, Py_hash_t h, double until, int32_t profile)
{
    if (self->groups == NULL || (size_t)(self->gcount + 1) * 2 > self->gmask + 1) {
        size_t size = self->groups == NULL ? 64 : (self->gmask + 1) * 2;
        if (self->gcount >= GROUP_CACHE_MAX) { /* start afresh: bounded memory */
            groups_clear(self);
            size = 64;
        }
        GEntry *fresh = PyMem_Calloc(size, sizeof(GEntry));
        if (fresh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (self->groups != NULL) {
            for (size_t i = 0; i <= self->gmask; i++) {
                GEntry *e = &self->groups[i];
                if (e->key == NULL)
                    continue;
                size_t j = (size_t)e->hash & (size - 1);
                while (fresh[j].key != NULL)
                    j = (j + 1) & (size - 1);
                fresh[j] = *e;
            }
            PyMem_Free(self->groups);
        }
        self->groups = fresh;
        self->gmask = size - 1;
    }
    size_t i = (size_t)h & self->gmask;
    for (;;) {
        GEntry *e = &self->groups[i];
        if (e->key == NULL) {
            Py_INCREF(key);
            *e = (GEntry){key, h, until, profile};
            self->gcount++;
            return 0;
        }
        if (e->hash == h && same_str(e->key, key)) {
            e->until = until;
            e->profile = profile;
            return 0;
        }
        i = (i + 1) & self->gmask;
    }
}

/* -- the decision -------------------------------------------------------------------------- */

/* Decision(allowed, role, rule, reason, requires_auth, via, user, op, obj): rbac.decision's
 * layout, built the way tuple.__new__(Decision, ...) builds it. */
static PyObject *
make_decision(Index *self, PyObject *allowed, PyObject *role, PyObject *rule, PyObject *reason,
              PyObject *auth, PyObject *via, PyObject *user, PyObject *op, PyObject *obj)
{
    PyObject *d = self->decision->tp_alloc(self->decision, 9);
    if (d == NULL)
        return NULL;
    PyObject *items[9] = {allowed, role, rule, reason, auth, via, user, op, obj};
    for (int i = 0; i < 9; i++) {
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(d, i, items[i]);
    }
    return d;
}

static inline const Entry *
find_role(const Entry *run, uint32_t n, uint32_t role)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (run[mid].role < role)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && run[lo].role == role ? &run[lo] : NULL;
}

static inline uint32_t
find_rank(const ByRole *by, uint32_t n, uint32_t role)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (by[mid].role < role)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && by[lo].role == role ? by[lo].rank : UINT32_MAX;
}

/* fnmatch's semantics for a pattern without '[': '*' any run (newlines too), '?' one code
 * point, everything else itself; case-sensitive, the whole name. */
static int
glob_match(PyObject *pat, PyObject *s)
{
    const int pk = PyUnicode_KIND(pat), sk = PyUnicode_KIND(s);
    const void *pd = PyUnicode_DATA(pat), *sd = PyUnicode_DATA(s);
    const Py_ssize_t pn = PyUnicode_GET_LENGTH(pat), sn = PyUnicode_GET_LENGTH(s);
    Py_ssize_t p = 0, i = 0, star = -1, mark = 0;
    while (i < sn) {
        if (p < pn) {
            Py_UCS4 c = PyUnicode_READ(pk, pd, p);
            if (c == '*') {
                star = p++;
                mark = i;
                continue;
            }
            if (c == '?' || c == PyUnicode_READ(sk, sd, i)) {
                p++;
                i++;
                continue;
            }
        }
        if (star < 0)
            return 0;
        p = star + 1;
        i = ++mark;
    }
    while (p < pn && PyUnicode_READ(pk, pd, p) == '*')
        p++;
    return p == pn;
}

/* Does scoped grant `s` cover the object?  1 yes, 0 no, -1: only Python can say. */
static int
scope_matches(const Scoped *s, PyObject *obj, PyObject *attrs, PyObject *user)
{
    switch (s->kind) {
    case K_ALL:
        return 1;
    case K_GLOB:
        return glob_match(s->a, obj);
    case K_MATCH: {
        PyObject *r = PyObject_CallOneArg(s->a, obj);
        if (r == NULL) {
            PyErr_Clear();
            return -1;
        }
        int m = r != Py_None;
        Py_DECREF(r);
        return m;
    }
    case K_ATTR:
    case K_OWNED: {
        if (attrs == NULL) /* attrs is None */
            return 0;
        if (!PyDict_CheckExact(attrs))
            return -1;
        PyObject *v = PyDict_GetItemWithError(attrs, s->a);
        if (v == NULL) {
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return -1;
            }
            return 0;
        }
        if (v == Py_None)
            return 0;
        if (!PyUnicode_CheckExact(v) || PyUnicode_READY(v) < 0) {
            PyErr_Clear();
            return -1; /* `==` of another type is Python's to run */
        }
        return same_str(v, s->kind == K_ATTR ? s->b : user);
    }
    default:
        return -1;
    }
}

typedef struct {
    PyObject *role, *via, *reason, *grant;
    int auth;
} Hit;

static int
hit_entry(const Entry *e, const Member *m, PyObject *op, Hit *h)
{
    PyObject *grant = PyDict_GetItemWithError(e->opmap, op);
    if (grant == NULL) {
        PyErr_Clear();
        return -1;
    }
    *h = (Hit){m->name, m->via, m->reason ? m->reason : grant, grant, (int)e->auth};
    return 0;
}

/* Does entry `e` grant operation `v` (the int `op`)?  1 yes, 0 no, -1 ask Python. */
static inline int
entry_grants(const Entry *e, long v, PyObject *op)
{
    if (v < MASKED)
        return (int)((e->ops >> v) & 1);
    PyObject *g = PyDict_GetItemWithError(e->opmap, op);
    if (g == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return g != NULL;
}

/* RbacPolicy._check() on profile `p`: 1 with *out filled, 0 nothing grants, -1 ask Python.
 * `out` NULL: only whether some role grants (no grant is fetched). */
static int
check(const Index *self, const Prof *p, const Slot *so, long v, PyObject *op, PyObject *user,
      PyObject *obj, PyObject *attrs, Hit *out)
{
    int have_fb = 0, g;
    Hit fb = {0};
    if (so != NULL && p->n_members) {
        const Entry *run = self->entries + so->a;
        const uint32_t n = so->b;
        if (p->n_members <= 8 || p->n_members <= 2 * n) {
            /* from the user's few roles to the object, in preference order */
            for (uint32_t i = 0; i < p->n_members; i++) {
                const Member *m = &p->members[i];
                const Entry *e = find_role(run, n, m->role);
                if (e == NULL || !(g = entry_grants(e, v, op)))
                    continue;
                if (g < 0)
                    return -1;
                if (out == NULL)
                    return 1;
                if (!e->auth)
                    return hit_entry(e, m, op, out) < 0 ? -1 : 1;
                if (!have_fb) {
                    if (hit_entry(e, m, op, &fb) < 0)
                        return -1;
                    have_fb = 1;
                }
            }
        }
        else {
            /* very many roles: from the object's few roles, the best rank wins */
            uint32_t best = UINT32_MAX, best_fb = UINT32_MAX;
            const Entry *be = NULL, *bfe = NULL;
            for (uint32_t j = 0; j < n; j++) {
                const Entry *e = &run[j];
                if (!(g = entry_grants(e, v, op)))
                    continue;
                if (g < 0)
                    return -1;
                uint32_t rank = find_rank(p->byrole, p->n_members, e->role);
                if (rank == UINT32_MAX)
                    continue;
                if (out == NULL)
                    return 1;
                if (!e->auth) {
                    if (rank < best)
                        best = rank, be = e;
                }
                else if (rank < best_fb)
                    best_fb = rank, bfe = e;
            }
            if (be != NULL)
                return hit_entry(be, &p->members[best], op, out) < 0 ? -1 : 1;
            if (bfe != NULL) {
                if (hit_entry(bfe, &p->members[best_fb], op, &fb) < 0)
                    return -1;
                have_fb = 1;
            }
        }
    }
    if (p->op_start != NULL) {
        const uint32_t from = p->op_start[v < MASKED ? v : MASKED];
        const uint32_t to = v < MASKED ? p->op_start[v + 1] : p->n_scoped;
        for (uint32_t k = from; k < to; k++) {
            const Scoped *s = &p->scoped[k];
            if (v >= MASKED && s->op != v)
                continue;
            int m = scope_matches(s, obj, attrs, user);
            if (m < 0)
                return -1;
            if (!m)
                continue;
            if (out == NULL)
                return 1;
            Hit h = {s->name, s->via, s->reason ? s->reason : s->grant, s->grant, s->auth};
            if (!s->auth) {
                *out = h;
                return 1;
            }
            if (!have_fb) {
                fb = h;
                have_fb = 1;
            }
        }
    }
    if (have_fb) {
        *out = fb;
        return 1;
    }
    return 0;
}

static PyObject *
Index_decide(Index *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 3 || nargs > 5)
        goto python;
    PyObject *attrs = nargs > 3 ? args[3] : NULL, *now = nargs > 4 ? args[4] : NULL;
    if (kwnames != NULL) {
        /* attrs= and now= only, each once, not also given by position */
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if ((k == str_attrs || PyUnicode_Compare(k, str_attrs) == 0) && attrs == NULL)
                attrs = args[nargs + i];
            else if ((k == str_now || PyUnicode_Compare(k, str_now) == 0) && now == NULL &&
                     nargs <= 4)
                now = args[nargs + i];
            else {
                PyErr_Clear();
                goto python;
            }
        }
    }
    if (attrs == Py_None)
        attrs = NULL;
    PyObject *user = args[0], *op = args[1], *obj = args[2];
    if (!PyUnicode_CheckExact(user) || !PyUnicode_CheckExact(obj) || !PyLong_CheckExact(op))
        goto python;
    int overflow;
    long v = PyLong_AsLongAndOverflow(op, &overflow);
    if (overflow || v < 0)
        goto python;
    if (PyUnicode_READY(user) < 0 || PyUnicode_READY(obj) < 0)
        return NULL;
    Py_hash_t hu = PyObject_Hash(user);
    if (hu == -1)
        return NULL;
    Py_hash_t ho = PyObject_Hash(obj);
    if (ho == -1)
        return NULL;
    const Slot *so = table_find(&self->objects, obj, ho);
    const Prof *p = NULL;
    Hit h;
    int r;
    if (self->group_any >= 0) {
        /* could a group role grant this at all?  If not, the user's groups do not matter */
        r = check(self, self->profiles[self->group_any], so, v, op, user, obj, attrs, NULL);
        if (r < 0)
            goto python;
        if (r) {
            const GEntry *g = groups_find(self, user, hu);
            if (g == NULL)
                goto python;
            const int32_t gp = g->profile;
            const double until = g->until; /* read before the clock (it may run Python) */
            if (gp == -2 || !(group_clock(self) < until))
                goto python;
            if (gp >= 0)
                p = self->profiles[gp];
        }
    }
    const int known = self->known_words < 0 ||
                      ((v >> 6) < self->known_words && (self->known[v >> 6] >> (v & 63)) & 1);
    if (p == NULL) {
        const Slot *su = table_find(&self->users, user, hu);
        if (su == NULL || su->b == NO_ROLES) {
            PyObject *why = su == NULL ? self->unknown : self->no_roles;
            if (!known || why == NULL)
                goto python;
            return make_decision(self, Py_False, Py_None, empty_str, why, Py_False, empty_tuple,
                                 user, op, obj);
        }
        if (su->b) { /* expiring assignments: the profile holds between two instants */
            double t;
            if (now == NULL || now == Py_None)
                t = clock_read(CLOCK_REALTIME);
            else if (PyFloat_CheckExact(now))
                t = PyFloat_AS_DOUBLE(now);
            else if (PyLong_CheckExact(now)) {
                t = PyLong_AsDouble(now);
                if (t == -1.0 && PyErr_Occurred()) {
                    PyErr_Clear();
                    goto python;
                }
            }
            else
                goto python;
            const double *win = &self->windows[2 * (su->b - 1)];
            if (!(win[0] <= t && t < win[1]))
                goto python;
        }
        p = self->profiles[su->a];
    }
    r = check(self, p, so, v, op, user, obj, attrs, &h);
    if (r < 0)
        goto python;
    if (r)
        return make_decision(self, Py_True, h.role, h.grant, h.reason,
                             h.auth ? Py_True : Py_False, h.via, user, op, obj);
    if (known)
        return make_decision(self, Py_False, Py_None, empty_str, self->policy, Py_False,
                             empty_tuple, user, op, obj);
python:
    return PyObject_Vectorcall(self->fallback, args, nargs, kwnames);
}

/* -- what the Python engine tells the index after asking NSS ------------------------------- */

static PyObject *
Index_add_profile(Index *self, PyObject *desc)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Index used before it was built");
        return NULL;
    }
    if (!PyTuple_Check(desc)) {
        PyErr_SetString(PyExc_TypeError, "a profile must be a tuple (members, scoped)");
        return NULL;
    }
    if (self->n_profiles >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many profiles");
        return NULL;
    }
    Prof *p = profile_make(self, desc, self->n_roles);
    if (p == NULL)
        return NULL;
    if (profile_add(self, p) < 0) {
        PyMem_Free(p);
        return NULL;
    }
    return PyLong_FromSsize_t(self->n_profiles - 1);
}

static PyObject *
Index_remember(Index *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Index used before it was built");
        return NULL;
    }
    if (nargs != 3 || !PyUnicode_CheckExact(args[0]) || !PyLong_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "remember(user: str, profile: int, until: float)");
        return NULL;
    }
    long prof = PyLong_AsLong(args[1]);
    if (prof == -1 && PyErr_Occurred())
        return NULL;
    if (prof < -2 || prof >= self->n_profiles) {
        PyErr_Format(PyExc_ValueError, "no profile %ld", prof);
        return NULL;
    }
    double until = PyFloat_AsDouble(args[2]);
    if (until == -1.0 && PyErr_Occurred())
        return NULL;
    if (PyUnicode_READY(args[0]) < 0)
        return NULL;
    Py_hash_t h = PyObject_Hash(args[0]);
    if (h == -1 || groups_put(self, args[0], h, until, (int32_t)prof) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Index_forget_groups(Index *self, PyObject *Py_UNUSED(ignored))
{
    groups_clear(self);
    Py_RETURN_NONE;
}

/* -- partitions: a check every decision of a caller passes first --------------------------- */

/* Partitions(key, restrict): objects are split into partitions, an object's named by its
 * attribute `key` (absent or "": in no partition); each user belongs to a set of partitions,
 * told by the caller with the instant (CLOCK_MONOTONIC, time.monotonic) until which that
 * answer holds; a partition in `restrict` allows only the operation ids of its frozenset.
 * Index.decide_in(parts, ...) answers a request only when the partition check passes: the
 * object's partition is one of the user's (or the object is in none and the user in none),
 * and the operation is allowed there.  Anything else -- a user not told or whose answer has
 * expired, an attribute that is not a str, attrs that are not a dict, a partition the user
 * is not in, an operation not allowed -- is None: the caller asks its own (worded) check.
 *
 * Laid out like the index's own tables, for the same reason (cache misses): partitions are
 * numbered 0..62 as they first appear (a small dict name -> number); a user's partitions are
 * a 64-bit mask in their slot, bit 63 set when they are in none; a restricted partition's
 * operations 0..127 a 128-bit mask.  A partition beyond the 63rd gets no number: requests on
 * its objects are handed back (a user's mask then lacks it, which is still exact for the
 * others); so is an operation id above 127 in a restricted partition. */
#define PARTS_MAX 63
#define PARTS_NONE ((uint64_t)1 << 63)

/* 32 bytes, two to a cache line: the user's name (inline, or a reference the table holds)
 * and hash in the slot, whose a and b hold the mask's low and high halves */
typedef struct {
    Slot s;
    double until;
} PEntry;

_Static_assert(sizeof(PEntry) == 32, "a partitions entry is 32 bytes");

static inline uint64_t
pentry_mask(const PEntry *e)
{
    return (uint64_t)e->s.a | ((uint64_t)e->s.b << 32);
}

typedef struct {
    PyObject_HEAD
    PyObject *key;    /* str */
    PyObject *pnames; /* dict: partition name -> its number */
    uint64_t restricted; /* bit p: partition p allows only the operations in ops[p] */
    uint64_t ops[PARTS_MAX][2];
    PEntry *users; /* aligned to 64 bytes within users_mem */
    void *users_mem;
    size_t umask;
    Py_ssize_t ucount;
} Parts;

static PyTypeObject PartsType;

static void
parts_users_clear(Parts *self)
{
    if (self->users != NULL) {
        for (size_t i = 0; i <= self->umask; i++)
            if (self->users[i].s.tag == TAG_REF)
                Py_DECREF(slot_ref(&self->users[i].s));
        PyMem_Free(self->users_mem);
    }
    self->users = NULL;
    self->users_mem = NULL;
    self->umask = 0;
    self->ucount = 0;
}

/* The number of partition `name` (an exact str), given one if `add` and there is room;
 * -1: none; -2: error. */
static long
parts_number(Parts *self, PyObject *name, int add)
{
    PyObject *n = PyDict_GetItemWithError(self->pnames, name);
    if (n != NULL)
        return PyLong_AsLong(n);
    if (PyErr_Occurred())
        return -2;
    Py_ssize_t next = PyDict_GET_SIZE(self->pnames);
    if (!add || next >= PARTS_MAX)
        return -1;
    PyObject *v = PyLong_FromSsize_t(next);
    if (v == NULL)
        return -2;
    int r = PyDict_SetItem(self->pnames, name, v);
    Py_DECREF(v);
    return r < 0 ? -2 : (long)next;
}

static int
Parts_init(Parts *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "restrict", NULL};
    PyObject *key, *restrict_;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UO!:Partitions", kwlist, &key, &PyDict_Type,
                                     &restrict_))
        return -1;
    if (!PyUnicode_CheckExact(key)) {
        PyErr_SetString(PyExc_TypeError, "key must be a str");
        return -1;
    }
    PyObject *pnames = PyDict_New();
    if (pnames == NULL)
        return -1;
    Py_INCREF(key);
    Py_XSETREF(self->key, key);
    Py_XSETREF(self->pnames, pnames);
    parts_users_clear(self);
    self->restricted = 0;
    memset(self->ops, 0, sizeof self->ops);
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(restrict_, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || !PyFrozenSet_CheckExact(v)) {
            PyErr_SetString(PyExc_TypeError,
                            "restrict must map partition names (str) to frozensets of ids");
            return -1;
        }
        long p = parts_number(self, k, 1);
        if (p == -2)
            return -1;
        if (p < 0)
            continue; /* no number: its objects are handed back anyway */
        self->restricted |= (uint64_t)1 << p;
        PyObject *it = PyObject_GetIter(v), *o;
        if (it == NULL)
            return -1;
        while ((o = PyIter_Next(it)) != NULL) {
            int overflow = 0;
            long id = PyLong_CheckExact(o) ? PyLong_AsLongAndOverflow(o, &overflow) : -1;
            Py_DECREF(o);
            if (id == -1 && PyErr_Occurred()) {
                Py_DECREF(it);
                return -1;
            }
            if (!overflow && id >= 0 && id < 128) /* others: handed back (not in a mask) */
                self->ops[p][id >> 6] |= (uint64_t)1 << (id & 63);
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            return -1;
    }
    return 0;
}

static PEntry *
parts_find(const Parts *self, PyObject *key, Py_hash_t h)
{
    if (self->users == NULL)
        return NULL;
    size_t i = (size_t)h & self->umask;
    for (;;) {
        PEntry *e = &self->users[i];
        if (e->s.tag == TAG_EMPTY)
            return NULL;
        if (slot_is(&e->s, key, h))
            return e;
        i = (i + 1) & self->umask;
    }
}

static int
parts_put(Parts *self, PyObject *key, Py_hash_t h, double until, uint64_t mask)
{
    PEntry *e = parts_find(self, key, h);
    if (e != NULL) {
        e->until = until;
        e->s.a = (uint32_t)mask;
        e->s.b = (uint32_t)(mask >> 32);
        return 0;
    }
    if (self->users == NULL || (size_t)(self->ucount + 1) * 2 > self->umask + 1) {
        size_t size = self->users == NULL ? 64 : (self->umask + 1) * 2;
        if (self->ucount >= GROUP_CACHE_MAX) { /* start afresh: bounded memory */
            parts_users_clear(self);
            size = 64;
        }
        void *mem = PyMem_Calloc(size * sizeof(PEntry) + 64, 1);
        if (mem == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        PEntry *fresh = (PEntry *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
        if (self->users != NULL) {
            for (size_t i = 0; i <= self->umask; i++) {
                PEntry *o = &self->users[i];
                if (o->s.tag == TAG_EMPTY)
                    continue;
                size_t j = (size_t)o->s.hash & (size - 1);
                while (fresh[j].s.tag != TAG_EMPTY)
                    j = (j + 1) & (size - 1);
                fresh[j] = *o;
            }
            PyMem_Free(self->users_mem);
        }
        self->users = fresh;
        self->users_mem = mem;
        self->umask = size - 1;
    }
    size_t i = (size_t)h & self->umask;
    while (self->users[i].s.tag != TAG_EMPTY)
        i = (i + 1) & self->umask;
    e = &self->users[i];
    e->s.hash = (uint32_t)h;
    if (key_inline(key)) {
        e->s.tag = (uint8_t)(1 + PyUnicode_GET_LENGTH(key));
        memcpy(e->s.text, PyUnicode_DATA(key), (size_t)PyUnicode_GET_LENGTH(key));
    }
    else {
        Py_INCREF(key);
        e->s.tag = TAG_REF;
        memcpy(e->s.text, &key, sizeof key);
    }
    e->until = until;
    e->s.a = (uint32_t)mask;
    e->s.b = (uint32_t)(mask >> 32);
    self->ucount++;
    return 0;
}

static PyObject *
Parts_tell(Parts *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->pnames == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Partitions used before __init__");
        return NULL;
    }
    if (nargs != 3 || !PyUnicode_CheckExact(args[0]) || !PyFrozenSet_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "tell(user: str, partitions: frozenset, until: float)");
        return NULL;
    }
    double until = PyFloat_AsDouble(args[2]);
    if (until == -1.0 && PyErr_Occurred())
        return NULL;
    uint64_t mask = PySet_GET_SIZE(args[1]) == 0 ? PARTS_NONE : 0;
    PyObject *it = PyObject_GetIter(args[1]), *o;
    if (it == NULL)
        return NULL;
    while ((o = PyIter_Next(it)) != NULL) {
        long p = PyUnicode_CheckExact(o) ? parts_number(self, o, 1) : -1;
        Py_DECREF(o);
        if (p == -2) {
            Py_DECREF(it);
            return NULL;
        }
        if (p >= 0)
            mask |= (uint64_t)1 << p;
    }
    Py_DECREF(it);
    if (PyErr_Occurred() || PyUnicode_READY(args[0]) < 0)
        return NULL;
    Py_hash_t h = PyObject_Hash(args[0]);
    if (h == -1 || parts_put(self, args[0], h, until, mask) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Parts_forget(Parts *self, PyObject *Py_UNUSED(ignored))
{
    parts_users_clear(self);
    Py_RETURN_NONE;
}

/* 1: the check passes; 0: it does not, or the index does not know (ask Python); -1: error.
 * `user` an exact str, `op` an exact int. */
static int
parts_pass(Parts *pt, PyObject *user, PyObject *op, PyObject *attrs)
{
    if (pt->pnames == NULL || PyUnicode_READY(user) < 0)
        return pt->pnames == NULL ? 0 : -1;
    Py_hash_t h = PyObject_Hash(user);
    if (h == -1)
        return -1;
    const PEntry *e = parts_find(pt, user, h);
    if (e == NULL)
        return 0;
    const double until = e->until;
    const uint64_t mine = pentry_mask(e);
    double now = coarse_margin >= 0 ? clock_read(CLOCK_MONOTONIC_COARSE) + coarse_margin
                                    : clock_read(CLOCK_MONOTONIC);
    if (!(now < until))
        return 0;
    PyObject *part = NULL;
    if (attrs != NULL) {
        if (!PyDict_CheckExact(attrs))
            return 0;
        part = PyDict_GetItemWithError(attrs, pt->key);
        if (part == NULL) {
            if (PyErr_Occurred())
                return -1;
        }
        else if (!PyUnicode_CheckExact(part))
            return 0;
        else if (PyUnicode_GET_LENGTH(part) == 0)
            part = NULL;
    }
    if (part == NULL) /* in no partition: only for a user in none */
        return (mine & PARTS_NONE) != 0;
    Py_INCREF(part);
    long p = parts_number(pt, part, 0);
    Py_DECREF(part);
    if (p == -2)
        return -1;
    if (p < 0 || !((mine >> p) & 1))
        return 0;
    if (!((pt->restricted >> p) & 1))
        return 1;
    int overflow;
    long v = PyLong_AsLongAndOverflow(op, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < 0 || v >= 128)
        return 0;
    return (int)((pt->ops[p][v >> 6] >> (v & 63)) & 1);
}

static PyObject *
Parts_allows(Parts *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "allows(user: str, op: int, attrs)");
        return NULL;
    }
    if (!PyLong_CheckExact(args[1]))
        Py_RETURN_FALSE;
    int r = parts_pass(self, args[0], args[1], args[2] == Py_None ? NULL : args[2]);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
Parts_known(Parts *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->ucount);
}

static int
Parts_traverse(Parts *self, visitproc visit, void *arg)
{
    Py_VISIT(self->key);
    Py_VISIT(self->pnames);
    return 0;
}

static int
Parts_clear(Parts *self)
{
    Py_CLEAR(self->key);
    Py_CLEAR(self->pnames);
    parts_users_clear(self);
    return 0;
}

static void
Parts_dealloc(Parts *self)
{
    PyObject_GC_UnTrack(self);
    Parts_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Parts_methods[] = {
    {"tell", (PyCFunction)(void (*)(void))Parts_tell, METH_FASTCALL,
     PyDoc_STR("tell(user, partitions: frozenset, until): the user's partitions, held until\n"
               "time.monotonic() reads until (then None again, until told afresh).")},
    {"forget", (PyCFunction)Parts_forget, METH_NOARGS,
     PyDoc_STR("Forget every user's partitions (the caller's own answers were dropped).")},
    {"allows", (PyCFunction)(void (*)(void))Parts_allows, METH_FASTCALL,
     PyDoc_STR("allows(user, op, attrs) -> bool: whether the partition check passes now\n"
               "(False also when the index does not know).")},
    {"known", (PyCFunction)Parts_known, METH_NOARGS,
     PyDoc_STR("How many users' partitions are held (expired ones included).")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PartsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rbac._native.Partitions",
    .tp_doc = PyDoc_STR("Partitions(key, restrict)\n\n"
                        "Objects split into partitions by their attribute key; users' partitions "
                        "told with a deadline; restrict: partition -> frozenset of operation ids "
                        "allowed in it (rbac/_native.c says how decide_in uses it)."),
    .tp_basicsize = sizeof(Parts),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Parts_init,
    .tp_dealloc = (destructor)Parts_dealloc,
    .tp_traverse = (traverseproc)Parts_traverse,
    .tp_clear = (inquiry)Parts_clear,
    .tp_methods = Parts_methods,
};

/* decide() for a request whose partition check passes (parts_pass); otherwise `otherwise`
 * (user, op, obj[, attrs]) when given, else None.  args: user, op, obj[, attrs]. */
static PyObject *
decide_in(Index *self, Parts *pt, PyObject *otherwise, PyObject *const *args, Py_ssize_t nargs)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Index used before it was built (or after a failed build)");
        return NULL;
    }
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "expected (user, op_id, obj, attrs=None)");
        return NULL;
    }
    PyObject *attrs = nargs > 3 && args[3] != Py_None ? args[3] : NULL;
    if (attrs != NULL) /* read below, after the hashes: its header on the way meanwhile */
        __builtin_prefetch(attrs);
    int r = 0;
    if (PyUnicode_CheckExact(args[0]) && PyLong_CheckExact(args[1])) {
        if (PyUnicode_CheckExact(args[2]) && PyUnicode_READY(args[0]) == 0 &&
            PyUnicode_READY(args[2]) == 0) {
            /* the user's slot in both tables and the object's, asked of memory at once:
             * with 10k users and 100k objects each is a cache miss, and these overlap */
            Py_hash_t hu = PyObject_Hash(args[0]), ho = PyObject_Hash(args[2]);
            if (hu == -1 || ho == -1)
                return NULL;
            if (pt->users != NULL)
                __builtin_prefetch(&pt->users[(size_t)hu & pt->umask]);
            if (self->users.slots != NULL)
                __builtin_prefetch(&self->users.slots[(size_t)hu & self->users.mask]);
            if (self->objects.slots != NULL)
                __builtin_prefetch(&self->objects.slots[(size_t)ho & self->objects.mask]);
            if (attrs != NULL && PyDict_CheckExact(attrs)) /* its key table, read next */
                __builtin_prefetch(((PyDictObject *)attrs)->ma_keys);
        }
        r = parts_pass(pt, args[0], args[1], attrs);
        if (r < 0)
            return NULL;
    }
    if (r)
        return Index_decide(self, args, (size_t)nargs, NULL);
    if (otherwise != NULL && otherwise != Py_None)
        return PyObject_Vectorcall(otherwise, args, (size_t)nargs, NULL);
    Py_RETURN_NONE;
}

static PyObject *
Index_decide_in(Index *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4 || nargs > 5 || !PyObject_TypeCheck(args[0], &PartsType)) {
        PyErr_SetString(PyExc_TypeError,
                        "decide_in(parts: Partitions, user, op_id, obj, attrs=None)");
        return NULL;
    }
    return decide_in(self, (Parts *)args[0], NULL, args + 1, nargs - 1);
}

/* Index.partitioned(parts, otherwise): decide_in bound to its partitions and fallback, as
 * one callable (user, op_id, obj, attrs=None) -- a caller's whole decision in one C call. */
typedef struct {
    PyObject_HEAD
    Index *index;
    Parts *parts;
    PyObject *otherwise;
    vectorcallfunc vectorcall;
} Bound;

static PyObject *
Bound_vectorcall(Bound *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "positional arguments only: (user, op, obj, attrs)");
        return NULL;
    }
    return decide_in(self->index, self->parts, self->otherwise, args,
                     PyVectorcall_NARGS(nargsf));
}

static int
Bound_traverse(Bound *self, visitproc visit, void *arg)
{
    Py_VISIT(self->index);
    Py_VISIT(self->parts);
    Py_VISIT(self->otherwise);
    return 0;
}

static int
Bound_clear(Bound *self)
{
    Py_CLEAR(self->index);
    Py_CLEAR(self->parts);
    Py_CLEAR(self->otherwise);
    return 0;
}

static void
Bound_dealloc(Bound *self)
{
    PyObject_GC_UnTrack(self);
    Bound_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject BoundType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rbac._native.Partitioned",
    .tp_doc = PyDoc_STR("Index.partitioned(parts, otherwise): (user, op_id, obj, attrs=None) -> "
                        "Decision, or otherwise(...) / None when the partition check does not "
                        "pass"),
    .tp_basicsize = sizeof(Bound),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Bound, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dealloc = (destructor)Bound_dealloc,
    .tp_traverse = (traverseproc)Bound_traverse,
    .tp_clear = (inquiry)Bound_clear,
};

static PyObject *
Index_partitioned(Index *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *otherwise = nargs > 1 ? args[1] : Py_None;
    if (nargs < 1 || nargs > 2 || !PyObject_TypeCheck(args[0], &PartsType) ||
        (otherwise != Py_None && !PyCallable_Check(otherwise))) {
        PyErr_SetString(PyExc_TypeError,
                        "partitioned(parts: Partitions, otherwise: callable = None)");
        return NULL;
    }
    Bound *b = PyObject_GC_New(Bound, &BoundType);
    if (b == NULL)
        return NULL;
    Py_INCREF(self);
    Py_INCREF(args[0]);
    b->index = self;
    b->parts = (Parts *)args[0];
    b->otherwise = otherwise == Py_None ? NULL : Py_NewRef(otherwise);
    b->vectorcall = (vectorcallfunc)Bound_vectorcall;
    PyObject_GC_Track(b);
    return (PyObject *)b;
}

/* -- object protocol ----------------------------------------------------------------------- */

static int
Index_traverse(Index *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->policy);
    Py_VISIT(self->decision);
    Py_VISIT(self->clock);
    Py_VISIT(self->unknown);
    Py_VISIT(self->no_roles);
    Py_VISIT(self->owned);
    return 0;
}

static int
Index_clear(Index *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->policy);
    Py_CLEAR(self->decision);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->unknown);
    Py_CLEAR(self->no_roles);
    groups_clear(self);
    /* the arrays point into `owned`: forget them before releasing it */
    PyMem_Free(self->users.slots);
    PyMem_Free(self->objects.slots);
    PyMem_Free(self->entries);
    PyMem_Free(self->windows);
    PyMem_Free(self->known);
    self->known = NULL;
    for (Py_ssize_t i = 0; i < self->n_profiles; i++)
        PyMem_Free(self->profiles[i]);
    PyMem_Free(self->profiles);
    memset(&self->users, 0, sizeof(Table));
    memset(&self->objects, 0, sizeof(Table));
    self->entries = NULL;
    self->windows = NULL;
    self->profiles = NULL;
    self->n_users = self->n_objects = self->n_entries = self->n_profiles = 0;
    self->cap_profiles = self->n_windows = self->profile_bytes = 0;
    self->ready = 0;
    Py_CLEAR(self->owned);
    return 0;
}

static void
Index_dealloc(Index *self)
{
    PyObject_GC_UnTrack(self);
    Index_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Index_stats(Index *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t bytes = (Py_ssize_t)((self->users.mask + 1 + self->objects.mask + 1) *
                                    sizeof(Slot)) +
                       self->n_entries * (Py_ssize_t)sizeof(Entry) + self->profile_bytes +
                       (Py_ssize_t)(self->groups ? (self->gmask + 1) * sizeof(GEntry) : 0);
    return Py_BuildValue("{sn,sn,sn,sn,sn,sn}", "users", self->n_users, "objects",
                         self->n_objects, "entries", self->n_entries, "profiles",
                         self->n_profiles, "remembered", self->gcount, "bytes", bytes);
}

static PyObject *
Index_call_guard(Index *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Index used before it was built (or after a failed build)");
        return NULL;
    }
    return Index_decide(self, args, nargsf, kwnames);
}

static PyMethodDef Index_methods[] = {
    {"decide", (PyCFunction)(void (*)(void))Index_call_guard, METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("decide(user, op_id, obj, attrs=None, now=None) -> Decision\n\n"
               "RbacPolicy.decide() in C; whatever it cannot answer exactly is passed\n"
               "unchanged to the Python fallback, which answers every case.")},
    {"decide_in", (PyCFunction)(void (*)(void))Index_decide_in, METH_FASTCALL,
     PyDoc_STR("decide_in(parts, user, op_id, obj, attrs=None) -> Decision or None\n\n"
               "decide() for a request that passes the Partitions check; None when it does\n"
               "not, or when the Partitions do not know (the caller checks in Python).")},
    {"partitioned", (PyCFunction)(void (*)(void))Index_partitioned, METH_FASTCALL,
     PyDoc_STR("partitioned(parts, otherwise) -> callable (user, op_id, obj, attrs=None):\n"
               "decide_in with these partitions, calling otherwise(user, op_id, obj, attrs)\n"
               "(or returning None when it is None) where decide_in returns None.")},
    {"add_profile", (PyCFunction)Index_add_profile, METH_O,
     PyDoc_STR("add_profile((members, scoped)) -> profile number (for a user's group roles)")},
    {"remember", (PyCFunction)(void (*)(void))Index_remember, METH_FASTCALL,
     PyDoc_STR("remember(user, profile, until): the profile of the user's current record\n"
               "(-1: their own, -2: ask Python) until the group resolver's clock reads until.")},
    {"forget_groups", (PyCFunction)Index_forget_groups, METH_NOARGS,
     PyDoc_STR("Forget every remembered group answer (the resolver forgot its own).")},
    {"stats", (PyCFunction)Index_stats, METH_NOARGS,
     PyDoc_STR("Sizes of the index: users, objects, entries, profiles, remembered, bytes.")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rbac._native.Index",
    .tp_doc = PyDoc_STR("Index(fallback, policy, decision, users, profiles, roles, known_ops, *, "
                        "group_any=-1, clock=None, unknown=None, no_roles=None)\n\n"
                        "A C index of a compiled RbacPolicy's grants (rbac/_native.c says how)."),
    .tp_basicsize = sizeof(Index),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Index_init,
    .tp_dealloc = (destructor)Index_dealloc,
    .tp_traverse = (traverseproc)Index_traverse,
    .tp_clear = (inquiry)Index_clear,
    .tp_methods = Index_methods,
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "rbac._native",
    .m_doc = PyDoc_STR("C index for rbac's decisions (optional; rbac works without it)."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&IndexType) < 0 || PyType_Ready(&PartsType) < 0 ||
        PyType_Ready(&BoundType) < 0)
        return NULL;
    if (empty_str == NULL && (empty_str = PyUnicode_FromString("")) == NULL)
        return NULL;
    if (empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    if (str_attrs == NULL && (str_attrs = PyUnicode_InternFromString("attrs")) == NULL)
        return NULL;
    if (str_now == NULL && (str_now = PyUnicode_InternFromString("now")) == NULL)
        return NULL;
    coarse_init();
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "API", API_VERSION) < 0 ||
        PyModule_AddObject(m, "COARSE_MARGIN", PyFloat_FromDouble(coarse_margin)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&IndexType);
    if (PyModule_AddObject(m, "Index", (PyObject *)&IndexType) < 0) {
        Py_DECREF(&IndexType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&PartsType);
    if (PyModule_AddObject(m, "Partitions", (PyObject *)&PartsType) < 0) {
        Py_DECREF(&PartsType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
