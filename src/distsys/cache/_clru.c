/*
 * distsys.cache._clru: the entries of an LRUCache, and its hot paths, in C.
 *
 * LRUMap holds the cache's items in a dict (key -> Node) and a doubly linked list of
 * the same nodes, from the least to the most recently used. It speaks the subset of the
 * OrderedDict API that distsys.cache._core uses for its slow paths (get, [], in, len,
 * move_to_end, popitem, pop, items, clear, iteration), so the Python code that handles
 * weights, eviction callbacks and per-item TTLs runs unchanged on it. On top it has the
 * hot paths of distsys.cache._hot, one C call each with no Python frame:
 *
 *   lru_get(key, default=None)    a lookup that counts a hit or a miss, checks the
 *                                 deadline when entries are (value, deadline) pairs,
 *                                 and marks a hit most recently used;
 *   lru_put(key, value, ttl=None) an insert or replace that evicts from the least
 *                                 recently used end when full, and counts it;
 *   memoize(key_of, custom, miss, explain)
 *                                 a callable for cached(): a hit is answered here.
 *
 * Anything else (an expired item found, a per-item TTL, a miss of a memoised function,
 * an unhashable key) goes back to the Python callables given to bind(), which are the
 * same functions the pure-Python paths use, so both behave alike.
 *
 * Memory safety does not rest on the cache's concurrency contract. A dict lookup or
 * insert may run Python code (a key's __eq__), and freeing a value may run a finalizer;
 * either may call back into the map, or let another thread in. So the dict and the
 * list each hold their own reference to a node, a node found by a lookup is held while
 * Python code can run, a node is only moved while it is still linked, and references are
 * dropped only once the map is consistent again. Misuse from several threads can then
 * mix up counts or order, as with an OrderedDict, but never memory.
 *
 * Garbage collection: nodes are not GC objects; the map's traverse visits each linked
 * node's key and value, which accounts for the references the nodes hold.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct Node {
    PyObject_HEAD
    struct Node *prev; /* towards the least recently used end */
    struct Node *next; /* towards the most recently used end */
    PyObject *key;
    PyObject *value; /* the bare value, or a (value, deadline) tuple when timed */
    int linked;
} Node;

static void
node_dealloc(Node *node)
{
    Py_XDECREF(node->key);
    Py_XDECREF(node->value);
    PyObject_Free(node);
}

static PyTypeObject NodeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "distsys.cache._clru.Node",
    .tp_basicsize = sizeof(Node),
    .tp_dealloc = (destructor)node_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static Node *
node_new(PyObject *key, PyObject *value)
{
    Node *node = PyObject_New(Node, &NodeType);
    if (node == NULL) {
        return NULL;
    }
    node->prev = node->next = NULL;
    node->key = Py_NewRef(key);
    node->value = Py_NewRef(value);
    node->linked = 0;
    return node;
}

typedef struct {
    PyObject_HEAD
    PyObject *dict; /* key -> Node */
    Node *first;    /* the least recently used */
    Node *last;     /* the most recently used */
    Py_ssize_t maxsize;
    Py_ssize_t hits;
    Py_ssize_t misses;
    Py_ssize_t evictions;
    Py_ssize_t expirations;
    char timed;               /* entries are (value, deadline) pairs */
    double lifetime;          /* seconds an item put without a ttl lives */
    PyObject *missing;        /* the "no such item" sentinel */
    PyObject *now;            /* () -> float */
    PyObject *drop_expired;   /* (key) -> None: remove an expired item, count, report */
    PyObject *check_hashable; /* (key) -> None: raise a clear error if unhashable */
    PyObject *slow_put;       /* (key, value, ttl) -> None: a put with a per-item ttl */
} LRUMap;

static PyTypeObject LRUMapType;
static PyTypeObject MemoType;

/* -- the list ------------------------------------------------------------------- */

static inline void
list_unlink(LRUMap *map, Node *node)
{
    if (node->prev != NULL) {
        node->prev->next = node->next;
    }
    else {
        map->first = node->next;
    }
    if (node->next != NULL) {
        node->next->prev = node->prev;
    }
    else {
        map->last = node->prev;
    }
    node->prev = node->next = NULL;
    node->linked = 0;
}

static inline void
list_append(LRUMap *map, Node *node)
{
    node->prev = map->last;
    node->next = NULL;
    if (map->last != NULL) {
        map->last->next = node;
    }
    else {
        map->first = node;
    }
    map->last = node;
    node->linked = 1;
}

/* Mark a node most recently used (the list's reference moves with it). */
static inline void
list_touch(LRUMap *map, Node *node)
{
    if (node->linked && map->last != node) {
        list_unlink(map, node);
        list_append(map, node);
    }
}

/* -- helpers -------------------------------------------------------------------- */

/* A new error is set while handling an earlier one (fetched: type, value, tb, whose
 * references this takes): make the earlier one the new one's __context__, as a raise
 * inside an except block does. */
static void
chain_context(PyObject *type, PyObject *value, PyObject *tb)
{
    PyObject *type2, *value2, *tb2;
    PyErr_Fetch(&type2, &value2, &tb2); /* first: normalizing needs no error pending */
    PyErr_NormalizeException(&type2, &value2, &tb2);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    if (value2 != NULL && value != NULL) {
        PyException_SetContext(value2, value); /* steals value */
    }
    else {
        Py_XDECREF(value);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyErr_Restore(type2, value2, tb2);
}

/* After a failed lookup or hash, a TypeError (an unhashable key or argument) is handed
 * to a Python function that raises a clearer error naming it. explain_begin fetches the
 * TypeError (1), or leaves any other error in place (0); explain_end takes the explaining
 * call's result: its error, with the TypeError as context, or, if it returned, the
 * TypeError restored. */
static int
explain_begin(PyObject *explain, PyObject **type, PyObject **value, PyObject **tb)
{
    if (explain == NULL || !PyErr_ExceptionMatches(PyExc_TypeError)) {
        return 0;
    }
    PyErr_Fetch(type, value, tb);
    return 1;
}

static void
explain_end(PyObject *ok, PyObject *type, PyObject *value, PyObject *tb)
{
    if (ok != NULL) {
        Py_DECREF(ok);
        PyErr_Restore(type, value, tb);
        return;
    }
    chain_context(type, value, tb);
}

/* The node for key (borrowed), or NULL: with an error set, or none when absent. */
static inline Node *
lookup(LRUMap *map, PyObject *key)
{
    Node *node = (Node *)PyDict_GetItemWithError(map->dict, key);
    PyObject *type, *value, *tb;
    if (node == NULL && PyErr_Occurred()
        && explain_begin(map->check_hashable, &type, &value, &tb)) {
        explain_end(PyObject_CallOneArg(map->check_hashable, key), type, value, tb);
    }
    return node;
}

static int
call_now(LRUMap *map, double *now)
{
    if (map->now == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "LRUMap: bind() was not called");
        return -1;
    }
    PyObject *t = PyObject_CallNoArgs(map->now);
    if (t == NULL) {
        return -1;
    }
    *now = PyFloat_AsDouble(t);
    Py_DECREF(t);
    if (*now == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* The deadline of a (value, deadline) entry; -1 with an error if it is not one. */
static int
entry_deadline(PyObject *entry, double *deadline)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_RuntimeError, "LRUMap: a timed entry is not (value, deadline)");
        return -1;
    }
    *deadline = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 1));
    if (*deadline == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* Take node out of the list and the dict; the caller owns one reference to it after,
 * and must drop it once the map is consistent. */
static int
map_detach(LRUMap *map, Node *node)
{
    Py_INCREF(node);
    if (node->linked) {
        list_unlink(map, node);
        Py_DECREF(node); /* the list's reference; ours keeps it alive */
    }
    PyObject *current = PyDict_GetItemWithError(map->dict, node->key);
    if (current == (PyObject *)node) {
        if (PyDict_DelItem(map->dict, node->key) < 0) {
            return -1;
        }
    }
    else if (current == NULL && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* Remove the least recently used node; the caller owns a reference to it after. */
static Node *
map_pop_first(LRUMap *map)
{
    Node *node = map->first;
    if (node == NULL) {
        return NULL;
    }
    if (map_detach(map, node) < 0) {
        Py_DECREF(node);
        return NULL;
    }
    return node;
}

/* Insert a new key at the most recently used end; 0, or -1 with an error set. */
static int
map_insert(LRUMap *map, PyObject *key, PyObject *value)
{
    Node *node = node_new(key, value);
    if (node == NULL) {
        return -1;
    }
    if (PyDict_SetItem(map->dict, key, (PyObject *)node) < 0) {
        Py_DECREF(node);
        return -1;
    }
    list_append(map, node); /* the list takes the creation reference */
    return 0;
}

/* Replace the value of a node in place; the old one is dropped last. */
static void
node_replace(Node *node, PyObject *value)
{
    PyObject *old = node->value;
    node->value = Py_NewRef(value);
    Py_DECREF(old);
}

/* Arguments by position or by name into out[0..total): the first `required` must be
 * given, the others default to NULL. 0, or -1 with a TypeError set. */
static int
parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           const char *const *names, int required, int total, PyObject **out)
{
    if (nargs > total) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname,
                     total, nargs);
        return -1;
    }
    for (int i = 0; i < total; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int i = 0;
        while (i < total && PyUnicode_CompareWithASCIIString(name, names[i]) != 0) {
            i++;
        }
        if (i == total) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         name);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (int i = 0; i < required; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* -- LRUMap: construction, GC ---------------------------------------------------- */

static PyObject *
map_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"maxsize", "missing", NULL};
    Py_ssize_t maxsize = PY_SSIZE_T_MAX;
    PyObject *missing = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|nO:LRUMap", kwlist, &maxsize, &missing)) {
        return NULL;
    }
    if (maxsize < 1) {
        PyErr_SetString(PyExc_ValueError, "LRUMap: maxsize must be >= 1");
        return NULL;
    }
    LRUMap *map = (LRUMap *)type->tp_alloc(type, 0);
    if (map == NULL) {
        return NULL;
    }
    map->dict = PyDict_New();
    if (map->dict == NULL) {
        Py_DECREF(map);
        return NULL;
    }
    map->maxsize = maxsize;
    map->missing = Py_NewRef(missing);
    map->lifetime = Py_HUGE_VAL;
    return (PyObject *)map;
}

/* Empty the map: the dict first, then the detached list, so that the values' finalizers
 * (run by the last Py_DECREFs) see a consistent, empty map. */
static void
map_empty(LRUMap *map)
{
    Node *node = map->first;
    map->first = map->last = NULL;
    if (map->dict != NULL) {
        PyDict_Clear(map->dict);
    }
    while (node != NULL) {
        Node *next = node->next;
        node->prev = node->next = NULL;
        node->linked = 0;
        Py_DECREF(node);
        node = next;
    }
}

static int
map_traverse(LRUMap *map, visitproc visit, void *arg)
{
    Py_VISIT(map->dict);
    for (Node *node = map->first; node != NULL; node = node->next) {
        Py_VISIT(node->key);
        Py_VISIT(node->value);
    }
    Py_VISIT(map->missing);
    Py_VISIT(map->now);
    Py_VISIT(map->drop_expired);
    Py_VISIT(map->check_hashable);
    Py_VISIT(map->slow_put);
    return 0;
}

static int
map_clear_refs(LRUMap *map)
{
    map_empty(map);
    Py_CLEAR(map->dict);
    Py_CLEAR(map->missing);
    Py_CLEAR(map->now);
    Py_CLEAR(map->drop_expired);
    Py_CLEAR(map->check_hashable);
    Py_CLEAR(map->slow_put);
    return 0;
}

static void
map_dealloc(LRUMap *map)
{
    PyObject_GC_UnTrack(map);
    map_clear_refs(map);
    Py_TYPE(map)->tp_free((PyObject *)map);
}

static PyObject *
map_bind(LRUMap *map, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"now", "lifetime", "drop_expired", "check_hashable", "slow_put", NULL};
    PyObject *now, *drop_expired, *check_hashable, *slow_put;
    double lifetime;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OdOOO:bind", kwlist, &now, &lifetime,
                                     &drop_expired, &check_hashable, &slow_put)) {
        return NULL;
    }
    Py_XSETREF(map->now, Py_NewRef(now));
    Py_XSETREF(map->drop_expired, Py_NewRef(drop_expired));
    Py_XSETREF(map->check_hashable, Py_NewRef(check_hashable));
    Py_XSETREF(map->slow_put, Py_NewRef(slow_put));
    map->lifetime = lifetime;
    Py_RETURN_NONE;
}

/* -- LRUMap: the hot paths --------------------------------------------------------- */

/* A timed hit: the live value (new reference), or NULL with *expired set, or an error.
 * The node may be changed by Python code run by now(): it is held, and only touched if
 * still linked. */
static PyObject *
timed_hit(LRUMap *map, Node *node, int *expired)
{
    PyObject *entry = Py_NewRef(node->value);
    Py_INCREF(node);
    double now, deadline;
    PyObject *value = NULL;
    *expired = 0;
    if (entry_deadline(entry, &deadline) == 0 && call_now(map, &now) == 0) {
        if (deadline <= now) {
            *expired = 1;
        }
        else {
            value = Py_NewRef(PyTuple_GET_ITEM(entry, 0));
            list_touch(map, node);
            map->hits++;
        }
    }
    Py_DECREF(node);
    Py_DECREF(entry);
    return value;
}

static PyObject *
drop_and_default(LRUMap *map, PyObject *key, PyObject *dflt)
{
    map->misses++;
    PyObject *r = PyObject_CallOneArg(map->drop_expired, key);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    return Py_NewRef(dflt);
}

static PyObject *
map_lru_get(LRUMap *map, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    static const char *const names[] = {"key", "default"};
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *key, *dflt = Py_None;
    if (kwnames == NULL && (nargs == 1 || nargs == 2)) {
        key = args[0];
        if (nargs == 2) {
            dflt = args[1];
        }
    }
    else {
        PyObject *out[2];
        if (parse_args("get", args, nargs, kwnames, names, 1, 2, out) < 0) {
            return NULL;
        }
        key = out[0];
        dflt = out[1] != NULL ? out[1] : Py_None;
    }
    Node *node = lookup(map, key);
    if (node == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        map->misses++;
        return Py_NewRef(dflt);
    }
    if (!map->timed) {
        list_touch(map, node);
        map->hits++;
        return Py_NewRef(node->value);
    }
    int expired;
    PyObject *value = timed_hit(map, node, &expired);
    if (value != NULL || !expired) {
        return value;
    }
    Py_INCREF(key);
    PyObject *r = drop_and_default(map, key, dflt);
    Py_DECREF(key);
    return r;
}

/* The least recently used item leaves to make room: counted as an eviction, or as an
 * expiration when timed and past its deadline at now. */
static int
evict_first(LRUMap *map, double now)
{
    Node *node = map_pop_first(map);
    if (node == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int expired = 0;
    if (map->timed) {
        double deadline;
        if (entry_deadline(node->value, &deadline) < 0) {
            Py_DECREF(node);
            return -1;
        }
        expired = deadline <= now;
    }
    if (expired) {
        map->expirations++;
    }
    else {
        map->evictions++;
    }
    Py_DECREF(node);
    return 0;
}

static PyObject *
map_lru_put(LRUMap *map, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    static const char *const names[] = {"key", "value", "ttl"};
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *out[3];
    if (kwnames == NULL && (nargs == 2 || nargs == 3)) {
        out[0] = args[0];
        out[1] = args[1];
        out[2] = nargs == 3 ? args[2] : NULL;
    }
    else if (parse_args("put", args, nargs, kwnames, names, 2, 3, out) < 0) {
        return NULL;
    }
    PyObject *key = out[0], *value = out[1];
    if (out[2] != NULL && out[2] != Py_None) { /* a per-item ttl: the general path */
        if (map->slow_put == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "LRUMap: bind() was not called");
            return NULL;
        }
        return PyObject_Vectorcall(map->slow_put, out, 3, NULL);
    }
    double now = 0.0;
    PyObject *stored = value;
    if (map->timed) {
        if (call_now(map, &now) < 0) {
            return NULL;
        }
        PyObject *deadline = PyFloat_FromDouble(now + map->lifetime);
        if (deadline == NULL) {
            return NULL;
        }
        stored = PyTuple_Pack(2, value, deadline);
        Py_DECREF(deadline);
        if (stored == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(stored);
    }
    int failed = 0;
    Node *node = lookup(map, key);
    if (node != NULL) {
        Py_INCREF(node);
        if (map->timed && PyTuple_CheckExact(node->value)) {
            double deadline;
            if (entry_deadline(node->value, &deadline) < 0) {
                failed = 1;
            }
            else if (deadline <= now) {
                map->expirations++;
            }
        }
        if (!failed) {
            list_touch(map, node);
            node_replace(node, stored);
        }
        Py_DECREF(node);
    }
    else if (PyErr_Occurred() || map_insert(map, key, stored) < 0) {
        failed = 1;
    }
    else if (PyDict_GET_SIZE(map->dict) > map->maxsize && evict_first(map, now) < 0) {
        failed = 1;
    }
    Py_DECREF(stored);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* -- LRUMap: the OrderedDict subset -------------------------------------------------- */

static PyObject *
map_get(LRUMap *map, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("get", nargs, 1, 2)) {
        return NULL;
    }
    Node *node = (Node *)PyDict_GetItemWithError(map->dict, args[0]);
    if (node == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    }
    return Py_NewRef(node->value);
}

static Py_ssize_t
map_length(LRUMap *map)
{
    return PyDict_GET_SIZE(map->dict);
}

static PyObject *
map_subscript(LRUMap *map, PyObject *key)
{
    Node *node = (Node *)PyDict_GetItemWithError(map->dict, key);
    if (node == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, key);
        }
        return NULL;
    }
    return Py_NewRef(node->value);
}

/* Remove key's item; its value (new reference) into *value if asked. 0 done, 1 absent. */
static int
map_remove(LRUMap *map, PyObject *key, PyObject **value)
{
    Node *node = (Node *)PyDict_GetItemWithError(map->dict, key);
    if (node == NULL) {
        return PyErr_Occurred() ? -1 : 1;
    }
    if (map_detach(map, node) < 0) {
        Py_DECREF(node);
        return -1;
    }
    if (value != NULL) {
        *value = Py_NewRef(node->value);
    }
    Py_DECREF(node);
    return 0;
}

/* data[key] = value: a new key goes to the most recently used end, an existing one
 * keeps its place (as in an OrderedDict); del data[key] removes it. */
static int
map_ass_subscript(LRUMap *map, PyObject *key, PyObject *value)
{
    if (value == NULL) {
        int r = map_remove(map, key, NULL);
        if (r == 1) {
            PyErr_SetObject(PyExc_KeyError, key);
            return -1;
        }
        return r;
    }
    Node *node = (Node *)PyDict_GetItemWithError(map->dict, key);
    if (node != NULL) {
        Py_INCREF(node);
        node_replace(node, value);
        Py_DECREF(node);
        return 0;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    return map_insert(map, key, value);
}

static int
map_contains(LRUMap *map, PyObject *key)
{
    return PyDict_Contains(map->dict, key);
}

static PyObject *
map_move_to_end(LRUMap *map, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("move_to_end", nargs, 1, 2)) {
        return NULL;
    }
    int last = 1;
    if (nargs == 2 && (last = PyObject_IsTrue(args[1])) < 0) {
        return NULL;
    }
    Node *node = (Node *)PyDict_GetItemWithError(map->dict, args[0]);
    if (node == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, args[0]);
        }
        return NULL;
    }
    if (!node->linked) {
        Py_RETURN_NONE;
    }
    if (last) {
        list_touch(map, node);
    }
    else if (map->first != node) {
        list_unlink(map, node);
        node->next = map->first;
        node->prev = NULL;
        map->first->prev = node;
        map->first = node;
        node->linked = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *
map_popitem(LRUMap *map, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("popitem", nargs, 0, 1)) {
        return NULL;
    }
    int last = 1;
    if (nargs == 1 && (last = PyObject_IsTrue(args[0])) < 0) {
        return NULL;
    }
    Node *node = last ? map->last : map->first;
    if (node == NULL) {
        PyErr_SetString(PyExc_KeyError, "dictionary is empty");
        return NULL;
    }
    if (map_detach(map, node) < 0) {
        Py_DECREF(node);
        return NULL;
    }
    PyObject *item = PyTuple_Pack(2, node->key, node->value);
    Py_DECREF(node);
    return item;
}

static PyObject *
map_pop(LRUMap *map, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("pop", nargs, 1, 2)) {
        return NULL;
    }
    PyObject *value;
    int r = map_remove(map, args[0], &value);
    if (r < 0) {
        return NULL;
    }
    if (r == 1) {
        if (nargs == 2) {
            return Py_NewRef(args[1]);
        }
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    }
    return value;
}

static PyObject *
map_clear(LRUMap *map, PyObject *Py_UNUSED(ignored))
{
    map_empty(map);
    Py_RETURN_NONE;
}

/* A list snapshot, least recently used first: 0 keys, 1 values, 2 (key, value) pairs. */
static PyObject *
map_snapshot(LRUMap *map, int what)
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (Node *node = map->first; node != NULL; node = node->next) {
        PyObject *item;
        if (what == 0) {
            item = Py_NewRef(node->key);
        }
        else if (what == 1) {
            item = Py_NewRef(node->value);
        }
        else {
            item = PyTuple_Pack(2, node->key, node->value);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
        }
        int r = PyList_Append(list, item); /* no Python code runs: the list stays valid */
        Py_DECREF(item);
        if (r < 0) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return list;
}

static PyObject *
map_keys(LRUMap *map, PyObject *Py_UNUSED(ignored))
{
    return map_snapshot(map, 0);
}

static PyObject *
map_values(LRUMap *map, PyObject *Py_UNUSED(ignored))
{
    return map_snapshot(map, 1);
}

static PyObject *
map_items(LRUMap *map, PyObject *Py_UNUSED(ignored))
{
    return map_snapshot(map, 2);
}

static PyObject *
map_iter(LRUMap *map)
{
    PyObject *keys = map_snapshot(map, 0);
    if (keys == NULL) {
        return NULL;
    }
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static PyObject *
map_repr(LRUMap *map)
{
    PyObject *items = map_snapshot(map, 2);
    if (items == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("LRUMap(%R)", items);
    Py_DECREF(items);
    return r;
}

/* -- Memo: cached()'s wrapper over one LRUMap ------------------------------------- */

typedef struct {
    PyObject_HEAD
    LRUMap *map;
    PyObject *key_of;  /* (args, kwargs) -> key */
    PyObject *miss;    /* (key, args, kwargs) -> result: compute and store */
    PyObject *explain; /* (key, args, kwargs) -> None: name an unhashable argument */
    int custom;        /* key_of builds every key, not only those with kwargs */
    PyObject *dict;
    PyObject *weakrefs;
} Memo;

/* The call's keyword arguments as a dict (new reference): a tp_call may get NULL. */
static inline PyObject *
keywords(PyObject *kwargs)
{
    return kwargs != NULL ? Py_NewRef(kwargs) : PyDict_New();
}

static PyObject *
memo_slow(Memo *memo, PyObject *key, PyObject *args, PyObject *kwargs)
{
    PyObject *kw = keywords(kwargs);
    if (kw == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(memo->miss, key, args, kw, NULL);
    Py_DECREF(kw);
    return r;
}

static PyObject *
memo_call(Memo *memo, PyObject *args, PyObject *kwargs)
{
    LRUMap *map = memo->map;
    PyObject *key;
    if (memo->custom || (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0)) {
        PyObject *kw = keywords(kwargs);
        if (kw == NULL) {
            return NULL;
        }
        key = PyObject_CallFunctionObjArgs(memo->key_of, args, kw, NULL);
        Py_DECREF(kw);
        if (key == NULL) {
            return NULL;
        }
    }
    else {
        key = Py_NewRef(args);
    }
    PyObject *result = NULL;
    Node *node = (Node *)PyDict_GetItemWithError(map->dict, key);
    if (node == NULL) {
        PyObject *type, *value, *tb;
        if (PyErr_Occurred()) {
            if (explain_begin(memo->explain, &type, &value, &tb)) {
                PyObject *kw = keywords(kwargs);
                PyObject *ok = kw == NULL ? NULL
                                          : PyObject_CallFunctionObjArgs(memo->explain, key,
                                                                         args, kw, NULL);
                Py_XDECREF(kw);
                explain_end(ok, type, value, tb);
            }
        }
        else {
            map->misses++;
            result = memo_slow(memo, key, args, kwargs);
        }
    }
    else if (!map->timed) {
        list_touch(map, node);
        map->hits++;
        result = Py_NewRef(node->value);
    }
    else {
        int expired;
        result = timed_hit(map, node, &expired);
        if (expired) {
            map->misses++;
            PyObject *r = PyObject_CallOneArg(map->drop_expired, key);
            if (r != NULL) {
                Py_DECREF(r);
                result = memo_slow(memo, key, args, kwargs);
            }
        }
    }
    Py_DECREF(key);
    return result;
}

static PyObject *
memo_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

/* Pickled by reference, as a module-level function is: by its qualified name. */
static PyObject *
memo_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyObject_GetAttrString(self, "__qualname__");
}

static PyObject *
memo_repr(PyObject *self)
{
    PyObject *name = PyObject_GetAttrString(self, "__qualname__");
    if (name == NULL) {
        PyErr_Clear();
        return PyUnicode_FromFormat("<cached function at %p>", self);
    }
    PyObject *r = PyUnicode_FromFormat("<cached function %S at %p>", name, self);
    Py_DECREF(name);
    return r;
}

static int
memo_traverse(Memo *memo, visitproc visit, void *arg)
{
    Py_VISIT(memo->map);
    Py_VISIT(memo->key_of);
    Py_VISIT(memo->miss);
    Py_VISIT(memo->explain);
    Py_VISIT(memo->dict);
    return 0;
}

static int
memo_clear(Memo *memo)
{
    Py_CLEAR(memo->map);
    Py_CLEAR(memo->key_of);
    Py_CLEAR(memo->miss);
    Py_CLEAR(memo->explain);
    Py_CLEAR(memo->dict);
    return 0;
}

static void
memo_dealloc(Memo *memo)
{
    PyObject_GC_UnTrack(memo);
    if (memo->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)memo);
    }
    memo_clear(memo);
    Py_TYPE(memo)->tp_free((PyObject *)memo);
}

static PyObject *
map_memoize(LRUMap *map, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("memoize", nargs, 4, 4)) {
        return NULL;
    }
    int custom = PyObject_IsTrue(args[1]);
    if (custom < 0) {
        return NULL;
    }
    Memo *memo = PyObject_GC_New(Memo, &MemoType);
    if (memo == NULL) {
        return NULL;
    }
    memo->map = (LRUMap *)Py_NewRef(map);
    memo->key_of = Py_NewRef(args[0]);
    memo->custom = custom;
    memo->miss = Py_NewRef(args[2]);
    memo->explain = Py_NewRef(args[3]);
    memo->dict = NULL;
    memo->weakrefs = NULL;
    PyObject_GC_Track(memo);
    return (PyObject *)memo;
}

static PyGetSetDef memo_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyMethodDef memo_methods[] = {
    {"__reduce__", memo_reduce, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject MemoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "distsys.cache._clru.Memo",
    .tp_doc = "A function memoised in an LRUCache (built by cached()).",
    .tp_basicsize = sizeof(Memo),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_call = (ternaryfunc)memo_call,
    .tp_descr_get = memo_descr_get,
    .tp_repr = memo_repr,
    .tp_traverse = (traverseproc)memo_traverse,
    .tp_clear = (inquiry)memo_clear,
    .tp_dealloc = (destructor)memo_dealloc,
    .tp_free = PyObject_GC_Del,
    .tp_dictoffset = offsetof(Memo, dict),
    .tp_weaklistoffset = offsetof(Memo, weakrefs),
    .tp_getset = memo_getset,
    .tp_methods = memo_methods,
};

/* -- LRUMap: the type -------------------------------------------------------------- */

static PyMethodDef map_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))map_bind, METH_VARARGS | METH_KEYWORDS,
     "bind(*, now, lifetime, drop_expired, check_hashable, slow_put): the slow paths."},
    {"lru_get", (PyCFunction)(void (*)(void))map_lru_get, METH_FASTCALL | METH_KEYWORDS,
     "lru_get(key, default=None): the cache's get."},
    {"lru_put", (PyCFunction)(void (*)(void))map_lru_put, METH_FASTCALL | METH_KEYWORDS,
     "lru_put(key, value, ttl=None): the cache's put."},
    {"memoize", (PyCFunction)(void (*)(void))map_memoize, METH_FASTCALL,
     "memoize(key_of, custom, miss, explain): cached()'s wrapper."},
    {"get", (PyCFunction)(void (*)(void))map_get, METH_FASTCALL,
     "get(key, default=None): the stored entry; order and counts are left alone."},
    {"move_to_end", (PyCFunction)(void (*)(void))map_move_to_end, METH_FASTCALL, NULL},
    {"popitem", (PyCFunction)(void (*)(void))map_popitem, METH_FASTCALL, NULL},
    {"pop", (PyCFunction)(void (*)(void))map_pop, METH_FASTCALL, NULL},
    {"clear", (PyCFunction)map_clear, METH_NOARGS, NULL},
    {"keys", (PyCFunction)map_keys, METH_NOARGS, "A list of the keys, least recent first."},
    {"values", (PyCFunction)map_values, METH_NOARGS, NULL},
    {"items", (PyCFunction)map_items, METH_NOARGS, NULL},
    {NULL},
};

static PyMemberDef map_members[] = {
    {"hits", T_PYSSIZET, offsetof(LRUMap, hits), 0, NULL},
    {"misses", T_PYSSIZET, offsetof(LRUMap, misses), 0, NULL},
    {"evictions", T_PYSSIZET, offsetof(LRUMap, evictions), 0, NULL},
    {"expirations", T_PYSSIZET, offsetof(LRUMap, expirations), 0, NULL},
    {"timed", T_BOOL, offsetof(LRUMap, timed), 0, NULL},
    {"maxsize", T_PYSSIZET, offsetof(LRUMap, maxsize), READONLY, NULL},
    {NULL},
};

static PyMappingMethods map_as_mapping = {
    .mp_length = (lenfunc)map_length,
    .mp_subscript = (binaryfunc)map_subscript,
    .mp_ass_subscript = (objobjargproc)map_ass_subscript,
};

static PySequenceMethods map_as_sequence = {
    .sq_contains = (objobjproc)map_contains,
};

static PyTypeObject LRUMapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "distsys.cache._clru.LRUMap",
    .tp_doc = "An LRUCache's entries: a dict and a recency list, with the hot paths.",
    .tp_basicsize = sizeof(LRUMap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = map_new,
    .tp_dealloc = (destructor)map_dealloc,
    .tp_traverse = (traverseproc)map_traverse,
    .tp_clear = (inquiry)map_clear_refs,
    .tp_repr = (reprfunc)map_repr,
    .tp_iter = (getiterfunc)map_iter,
    .tp_as_mapping = &map_as_mapping,
    .tp_as_sequence = &map_as_sequence,
    .tp_methods = map_methods,
    .tp_members = map_members,
};

static struct PyModuleDef clru_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "distsys.cache._clru",
    .m_doc = "An LRUCache's entries and hot paths in C (see _clru.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__clru(void)
{
    if (PyType_Ready(&NodeType) < 0 || PyType_Ready(&LRUMapType) < 0
        || PyType_Ready(&MemoType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&clru_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "LRUMap", (PyObject *)&LRUMapType) < 0
        || PyModule_AddObjectRef(module, "Memo", (PyObject *)&MemoType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
