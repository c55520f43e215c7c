// The global environment of design document functions in Settee's sandbox: the helpers
// CouchDB's JavaScript query server offers (emit, log, sum, isArray, toJSON) and the entry
// points the Rust side calls. Values cross the boundary as JSON text.
var __settee_fns = [];
var __settee_rows = null;
var __settee_log = [];

function emit(key, value) {
  if (__settee_rows === null) {
    throw new Error("emit() can only be called from a map function");
  }
  __settee_rows.push([key === undefined ? null : key, value === undefined ? null : value]);
}

function log(message) {
  if (__settee_log.length < 100) {
    __settee_log.push(typeof message === "string" ? message : __settee_text(message));
  }
}

function sum(values) {
  var total = 0;
  for (var i = 0; i < values.length; i++) {
    total += values[i];
  }
  return total;
}

function isArray(value) {
  return Array.isArray(value);
}

function toJSON(value) {
  return JSON.stringify(value);
}

// `__settee_text(value)`: the JSON text of a value leaving the sandbox (emitted rows, a
// reduction, a thrown verdict, a logged value). QuickJS's JSON.stringify recurses on the C
// stack without a check, so a value nested more than MAX_DEPTH levels is refused first, by
// a walk that keeps its own stack, with a `SetteeTooDeep` error. The built-ins it uses are
// captured here, so a function replacing them changes only what it sees itself.
var __settee_text = (function () {
  var MAX_DEPTH = 120;
  var stringify = JSON.stringify;
  var isArray = Array.isArray;
  var hasOwn = Object.prototype.hasOwnProperty;
  function tooDeep() {
    var e = new Error("a value nested more than " + MAX_DEPTH + " levels deep cannot leave the sandbox");
    e.name = "SetteeTooDeep";
    return e;
  }
  function checkDepth(value) {
    var pending = [value];
    var depths = [0];
    var n = 1;
    while (n > 0) {
      n--;
      var v = pending[n];
      var d = depths[n];
      if (v === null || typeof v !== "object") {
        continue;
      }
      if (d >= MAX_DEPTH) {
        throw tooDeep();
      }
      if (typeof v.toJSON === "function") {
        v = v.toJSON();
        if (v === null || typeof v !== "object") {
          continue;
        }
      }
      if (isArray(v)) {
        for (var i = 0; i < v.length; i++) {
          pending[n] = v[i];
          depths[n] = d + 1;
          n++;
        }
      } else {
        for (var k in v) {
          if (hasOwn.call(v, k)) {
            pending[n] = v[k];
            depths[n] = d + 1;
            n++;
          }
        }
      }
    }
  }
  return function (value) {
    checkDepth(value);
    var text = stringify(value);
    return text === undefined ? "null" : text;
  };
})();

function __settee_keep(fn) {
  if (typeof fn !== "function") {
    throw new TypeError("the source does not evaluate to a function");
  }
  __settee_fns.push(fn);
  return __settee_fns.length - 1;
}

function __settee_compile(source) {
  return __settee_keep((0, eval)("(" + source + "\n)"));
}

// A `require` for CommonJS modules stored in `root` (a design document, or the part of it
// a view may use): paths are from the root, `./` and `../` from the requiring module's
// folder; each module runs once per compiled function.
function __settee_require_in(root) {
  var loaded = {};
  function make(folder) {
    return function (path) {
      var parts = path.charAt(0) === "." ? folder.slice() : [];
      var steps = String(path).split("/");
      for (var i = 0; i < steps.length; i++) {
        if (steps[i] === "..") {
          parts.pop();
        } else if (steps[i] !== "." && steps[i] !== "") {
          parts.push(steps[i]);
        }
      }
      var id = parts.join("/");
      if (Object.prototype.hasOwnProperty.call(loaded, id)) {
        return loaded[id].exports;
      }
      var node = root;
      for (var j = 0; j < parts.length; j++) {
        if (node === null || typeof node !== "object" || !(parts[j] in node)) {
          throw new Error("require: no module " + id);
        }
        node = node[parts[j]];
      }
      if (typeof node !== "string") {
        throw new Error("require: " + id + " is not a module's source");
      }
      var module = { id: id, exports: {} };
      loaded[id] = module;
      new Function("module", "exports", "require", node)(module, module.exports, make(parts.slice(0, -1)));
      return module.exports;
    };
  }
  return make([]);
}

function __settee_compile_in(source, root) {
  var require = __settee_require_in(JSON.parse(root));
  return __settee_keep(new Function("require", "return (" + source + "\n);")(require));
}

// Freezes a parsed document and everything in it, as CouchDB's query server does for map
// functions: a function that changes its document changes nothing (an assignment is
// ignored, or throws in strict code), neither its own rows nor another function's input.
function __settee_freeze(value) {
  var stack = [value];
  while (stack.length > 0) {
    var v = stack.pop();
    if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
      Object.freeze(v);
      for (var k in v) {
        stack.push(v[k]);
      }
    }
  }
  return value;
}

function __settee_map(index, doc) {
  __settee_rows = [];
  try {
    __settee_fns[index](__settee_freeze(JSON.parse(doc)));
    return __settee_text(__settee_rows);
  } finally {
    __settee_rows = null;
  }
}

function __settee_filter(index, doc, req) {
  return !!__settee_fns[index](JSON.parse(doc), JSON.parse(req));
}

function __settee_validate(index, newDoc, oldDoc, userCtx, secObj) {
  try {
    __settee_fns[index](JSON.parse(newDoc), JSON.parse(oldDoc), JSON.parse(userCtx), JSON.parse(secObj));
    return null;
  } catch (e) {
    // A thrown Error is a bug in the function; any other thrown value is the verdict.
    if (e instanceof Error) {
      throw e;
    }
    return __settee_text(e);
  }
}

function __settee_reduce(index, keys, values, rereduce) {
  return __settee_text(__settee_fns[index](JSON.parse(keys), JSON.parse(values), rereduce));
}

function __settee_take_log() {
  var lines = __settee_log;
  __settee_log = [];
  return JSON.stringify(lines);
}
