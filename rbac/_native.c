/* rbac._native: the commonest RBAC decision, answered without leaving C.
 *
 * Why this exists.  RbacPolicy.decide() in pure Python is a handful of dict lookups, but with
 * 10k users and 100k objects drawn at random every one of those lookups misses the CPU caches:
 * a Python dict lookup with a freshly built key touches the index table, the entry table, the
 * stored key object and the value object, and the engine needs three or four of them.  At
 * ~100 ns a miss the pure-Python floor is ~1.8 us.  This index keeps the same facts in flat C
 * arrays laid out so that one decision touches about half as many cache lines:
 *
 *   users    open-addressing table  name -> profile number   (hash, key and value in one slot)
 *   objects  open-addressing table  name -> run of entries   (hash, key, first entry, count)
 *   entries  per object, sorted by role number: role, its "needs authentication" flag, the
 *            operations it grants as a 64-bit mask, and the {operation: grant} dict (touched only
 *            to fetch the grant of an allowed decision)
 *   members  per profile, in preference order: role number, role name, inheritance path
 *
 * It answers exactly the case RbacPolicy.decide() answers inline in Python: a user of the
 * policy's `_fast` table (few roles, no expiring assignment, no scoped grant), an operation
 * id between 0 and 63, an object named by the user's by-name grants.  A role that needs fresh
 * authentication, an operation outside 0..63, arguments of other types, unknown users -- all
 * go to the Python fallback (RbacPolicy._decide), which answers every case.  So the native
 * path can only ever return what the Python path returns; tests/rbac run the hypothesis
 * equivalence properties against both.
 *
 * Memory ownership: the C arrays hold borrowed pointers; every object they point to is kept
 * alive by the `owned` list.  The index references the policy (for denial texts) and the policy
 * references the index (its `decide` attribute), so the type takes part in garbage collection.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    Py_hash_t hash;
    PyObject *key; /* NULL: empty slot */
    uint32_t a;    /* users: profile number; objects: first entry */
    uint32_t b;    /* objects: number of entries */
} Slot;

typedef struct {
    Slot *slots;
    size_t mask;
} Table;

typedef struct {
    uint32_t role;
    uint32_t auth;
    uint64_t ops;
    PyObject *opmap;
} Entry;

typedef struct {
    uint32_t role;
    PyObject *name;
    PyObject *via;
} Member;

typedef struct {
    uint32_t start;
    uint32_t len;
} Range;

typedef struct {
    PyObject_HEAD
    Table users;
    Table objects;
    Entry *entries;
    Member *members;
    Range *profiles;
    Py_ssize_t n_users, n_objects, n_entries, n_profiles;
    uint64_t known_ops;
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

static inline Slot *
table_find(const Table *t, PyObject *key, Py_hash_t h)
{
    size_t i = (size_t)h & t->mask;
    for (;;) {
        Slot *s = &t->slots[i];
        if (s->key == NULL)
            return NULL;
        if (s->hash == h && same_str(s->key, key))
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
        if (s->key == NULL) {
            s->key = key;
            s->hash = h;
            *fresh = 1;
            return s;
        }
        if (s->hash == h && same_str(s->key, key)) {
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

/* A key usable in a table: an exact, ready str, kept alive by `owned`. */
static Py_hash_t
owned_key(Index *self, PyObject *key, const char *what)
{
    if (!PyUnicode_CheckExact(key)) {
        PyErr_Format(PyExc_TypeError, "%s names must be str, not %.100s", what,
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    if (PyUnicode_READY(key) < 0 || PyList_Append(self->owned, key) < 0)
        return -1;
    return PyObject_Hash(key);
}

/* -- construction -------------------------------------------------------------------------- */

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
    Py_ssize_t pos = 0;
    PyObject *name, *num;
    while (PyDict_Next(users, &pos, &name, &num)) {
        Py_hash_t h = owned_key(self, name, "user");
        if (h == -1)
            return -1;
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
        table_slot(&self->users, name, h, &fresh)->a = (uint32_t)p;
    }
    return 0;
}

static int
load_profiles(Index *self, PyObject *profiles, Py_ssize_t n_roles)
{
    if (!PyList_Check(profiles)) {
        PyErr_SetString(PyExc_TypeError, "profiles must be a list of tuples");
        return -1;
    }
    self->n_profiles = PyList_GET_SIZE(profiles);
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < self->n_profiles; i++) {
        PyObject *p = PyList_GET_ITEM(profiles, i);
        if (!PyTuple_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "a profile must be a tuple of (role, name, via)");
            return -1;
        }
        total += PyTuple_GET_SIZE(p);
    }
    if (total > UINT32_MAX || self->n_profiles > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many profile members");
        return -1;
    }
    self->profiles = PyMem_Calloc((size_t)self->n_profiles + 1, sizeof(Range));
    self->members = PyMem_Calloc((size_t)total + 1, sizeof(Member));
    if (self->profiles == NULL || self->members == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < self->n_profiles; i++) {
        PyObject *p = PyList_GET_ITEM(profiles, i);
        self->profiles[i].start = (uint32_t)k;
        self->profiles[i].len = (uint32_t)PyTuple_GET_SIZE(p);
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(p); j++, k++) {
            long role;
            PyObject *name, *via, *member = PyTuple_GET_ITEM(p, j);
            if (!PyTuple_Check(member)) {
                PyErr_SetString(PyExc_TypeError, "a profile member is a tuple");
                return -1;
            }
            if (!PyArg_ParseTuple(member, "lUO!;a profile member is "
                                  "(role number, role name, via tuple)",
                                  &role, &name, &PyTuple_Type, &via))
                return -1;
            if (role < 0 || role >= n_roles) {
                PyErr_Format(PyExc_ValueError, "profile member %R: no role %ld", name, role);
                return -1;
            }
            if (PyList_Append(self->owned, name) < 0 || PyList_Append(self->owned, via) < 0)
                return -1;
            self->members[k] = (Member){(uint32_t)role, name, via};
        }
    }
    return 0;
}

/* Operations 0..63 of an {operation: grant} dict, as a bit mask (others are left to Python). */
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
        if (!overflow && v >= 0 && v < 64)
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
                if (PyList_Append(self->owned, name) < 0)
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
        if (s->key != NULL) {
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
            self->entries[s->a + s->b++] =
                (Entry){(uint32_t)r, (uint32_t)auth, op_mask(opmap), opmap};
        }
    }
    self->n_entries = total;
    return 0;
}

static int
Index_init(Index *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback", "policy", "decision", "users", "profiles", "roles",
                             "known_ops", NULL};
    PyObject *fallback, *policy, *decision, *users, *profiles, *roles, *known;
    if (self->owned != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "an Index is built once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!OOO!O!:Index", kwlist, &fallback, &policy,
                                     &PyType_Type, &decision, &users, &profiles, &PyList_Type,
                                     &roles, &PyLong_Type, &known))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    if (!PyType_IsSubtype((PyTypeObject *)decision, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "decision must be a tuple subclass");
        return -1;
    }
    self->known_ops = PyLong_AsUnsignedLongLongMask(known);
    if (PyErr_Occurred())
        return -1;
    self->owned = PyList_New(0);
    if (self->owned == NULL)
        return -1;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(policy);
    self->policy = policy;
    Py_INCREF(decision);
    self->decision = (PyTypeObject *)decision;
    if (load_profiles(self, profiles, PyList_GET_SIZE(roles)) < 0 ||
        load_users(self, users) < 0 || load_objects(self, roles) < 0)
        return -1;
    self->ready = 1;
    return 0;
}

/* "" and (): the rule and path of a plain denial, made once at import */
static PyObject *empty_str, *empty_tuple;

/* -- the decision -------------------------------------------------------------------------- */

/* Decision(allowed, role, rule, reason, requires_auth, via, user, op, obj): rbac.decision's
 * layout, built the way tuple.__new__(Decision, ...) builds it. */
static PyObject *
make_decision(Index *self, PyObject *allowed, PyObject *role, PyObject *rule, PyObject *reason,
              PyObject *via, PyObject *user, PyObject *op, PyObject *obj)
{
    PyObject *d = self->decision->tp_alloc(self->decision, 9);
    if (d == NULL)
        return NULL;
    PyObject *items[9] = {allowed, role, rule, reason, Py_False, via, user, op, obj};
    for (int i = 0; i < 9; i++) {
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(d, i, items[i]);
    }
    return d;
}

/* Keywords the fast path may ignore: attrs and now matter only to users it does not answer. */
static int
keywords_ignorable(PyObject *kwnames, Py_ssize_t nargs)
{
    Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
    if (nargs + n > 5)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, "attrs") == 0 ? nargs > 3
            : PyUnicode_CompareWithASCIIString(k, "now") == 0 ? nargs > 4
                                                             : 1)
            return 0;
    }
    return 1;
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

static PyObject *
Index_decide(Index *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 3 || nargs > 5 || (kwnames != NULL && !keywords_ignorable(kwnames, nargs)))
        goto python;
    PyObject *user = args[0], *op = args[1], *obj = args[2];
    if (!PyUnicode_CheckExact(user) || !PyUnicode_CheckExact(obj) || !PyLong_CheckExact(op))
        goto python;
    int overflow;
    long v = PyLong_AsLongAndOverflow(op, &overflow);
    if (overflow || v < 0 || v > 63)
        goto python;
    if (PyUnicode_READY(user) < 0 || PyUnicode_READY(obj) < 0)
        return NULL;
    Py_hash_t hu = PyObject_Hash(user);
    if (hu == -1)
        return NULL;
    const Slot *su = table_find(&self->users, user, hu);
    if (su == NULL)
        goto python;
    Py_hash_t ho = PyObject_Hash(obj);
    if (ho == -1)
        return NULL;
    uint64_t bit = (uint64_t)1 << v;
    const Slot *so = table_find(&self->objects, obj, ho);
    if (so != NULL) {
        const Range pr = self->profiles[su->a];
        const Entry *run = self->entries + so->a;
        for (uint32_t i = 0; i < pr.len; i++) {
            const Member *m = &self->members[pr.start + i];
            const Entry *e = find_role(run, so->b, m->role);
            if (e == NULL || !(e->ops & bit))
                continue;
            if (e->auth)
                goto python; /* Python prefers a role that needs no authentication */
            PyObject *grant = PyDict_GetItemWithError(e->opmap, op);
            if (grant == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                goto python;
            }
            return make_decision(self, Py_True, m->name, grant, grant, m->via, user, op, obj);
        }
    }
    if (self->known_ops & bit) {
        return make_decision(self, Py_False, Py_None, empty_str, self->policy, empty_tuple, user,
                             op, obj);
    }
python:
    return PyObject_Vectorcall(self->fallback, args, nargs, kwnames);
}

/* -- object protocol ----------------------------------------------------------------------- */

static int
Index_traverse(Index *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->policy);
    Py_VISIT(self->decision);
    Py_VISIT(self->owned);
    return 0;
}

static int
Index_clear(Index *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->policy);
    Py_CLEAR(self->decision);
    /* the arrays point into `owned`: forget them before releasing it */
    PyMem_Free(self->users.slots);
    PyMem_Free(self->objects.slots);
    PyMem_Free(self->entries);
    PyMem_Free(self->members);
    PyMem_Free(self->profiles);
    memset(&self->users, 0, sizeof(Table));
    memset(&self->objects, 0, sizeof(Table));
    self->entries = NULL;
    self->members = NULL;
    self->profiles = NULL;
    self->n_users = self->n_objects = self->n_entries = self->n_profiles = 0;
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
    return Py_BuildValue("{sn,sn,sn,sn,sn}", "users", self->n_users, "objects", self->n_objects,
                         "entries", self->n_entries, "profiles", self->n_profiles, "bytes",
                         (Py_ssize_t)((self->users.mask + 1 + self->objects.mask + 1) *
                                          sizeof(Slot) +
                                      self->n_entries * sizeof(Entry)));
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
               "RbacPolicy.decide() for the commonest case, in C; anything else is passed\n"
               "unchanged to the Python fallback, which answers every case.")},
    {"stats", (PyCFunction)Index_stats, METH_NOARGS,
     PyDoc_STR("Sizes of the index: users, objects, entries, profiles, bytes.")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rbac._native.Index",
    .tp_doc = PyDoc_STR("Index(fallback, policy, decision, users, profiles, roles, known_ops)\n\n"
                        "A C index of the by-name grants of a compiled RbacPolicy."),
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
    .m_doc = PyDoc_STR("C index for rbac's hot decision path (optional; rbac works without it)."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&IndexType) < 0)
        return NULL;
    if (empty_str == NULL && (empty_str = PyUnicode_FromString("")) == NULL)
        return NULL;
    if (empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&IndexType);
    if (PyModule_AddObject(m, "Index", (PyObject *)&IndexType) < 0) {
        Py_DECREF(&IndexType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
