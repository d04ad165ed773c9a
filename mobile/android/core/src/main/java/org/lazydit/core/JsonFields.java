package org.lazydit.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import java.util.LinkedHashMap;
import java.util.Map;

/** Typed access to manifest JSON that names the offending key path when a field is wrong. */
final class JsonFields {
    private final JsonObject obj;
    private final String path;

    JsonFields(JsonObject obj, String path) {
        this.obj = obj;
        this.path = path;
    }

    static JsonFields of(JsonElement e, String path) throws ManifestException {
        if (e == null || !e.isJsonObject()) {
            throw new ManifestException(path + ": expected an object");
        }
        return new JsonFields(e.getAsJsonObject(), path);
    }

    String at(String key) {
        return path.isEmpty() ? key : path + "." + key;
    }

    boolean has(String key) {
        return obj.has(key) && !obj.get(key).isJsonNull();
    }

    JsonElement raw(String key) {
        return obj.get(key);
    }

    String string(String key) throws ManifestException {
        return primitive(key, "a string").getAsString();
    }

    String string(String key, String fallback) throws ManifestException {
        return has(key) ? string(key) : fallback;
    }

    double number(String key) throws ManifestException {
        JsonPrimitive p = primitive(key, "a number");
        if (!p.isNumber()) {
            throw new ManifestException(at(key) + ": expected a number, got " + p);
        }
        return p.getAsDouble();
    }

    long integer(String key) throws ManifestException {
        double v = number(key);
        if (v != Math.rint(v)) {
            throw new ManifestException(at(key) + ": expected an integer, got " + v);
        }
        return (long) v;
    }

    long integer(String key, long fallback) throws ManifestException {
        return has(key) ? integer(key) : fallback;
    }

    boolean bool(String key, boolean fallback) throws ManifestException {
        if (!has(key)) {
            return fallback;
        }
        JsonPrimitive p = primitive(key, "true or false");
        if (!p.isBoolean()) {
            throw new ManifestException(at(key) + ": expected true or false, got " + p);
        }
        return p.getAsBoolean();
    }

    JsonFields object(String key) throws ManifestException {
        if (!has(key)) {
            throw new ManifestException(at(key) + ": missing (expected an object)");
        }
        return of(obj.get(key), at(key));
    }

    /** The members of an object-valued field, in file order. */
    Map<String, JsonElement> members(String key) throws ManifestException {
        JsonFields o = object(key);
        Map<String, JsonElement> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : o.obj.entrySet()) {
            out.put(e.getKey(), e.getValue());
        }
        return out;
    }

    JsonArray array(String key) throws ManifestException {
        if (!has(key)) {
            throw new ManifestException(at(key) + ": missing (expected a list)");
        }
        JsonElement e = obj.get(key);
        if (!e.isJsonArray()) {
            throw new ManifestException(at(key) + ": expected a list");
        }
        return e.getAsJsonArray();
    }

    long[] longs(String key) throws ManifestException {
        JsonArray a = array(key);
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            JsonElement e = a.get(i);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
                throw new ManifestException(at(key) + "[" + i + "]: expected an integer, got " + e);
            }
            out[i] = e.getAsLong();
        }
        return out;
    }

    private JsonPrimitive primitive(String key, String expected) throws ManifestException {
        if (!has(key)) {
            throw new ManifestException(at(key) + ": missing (expected " + expected + ")");
        }
        JsonElement e = obj.get(key);
        if (!e.isJsonPrimitive()) {
            throw new ManifestException(at(key) + ": expected " + expected + ", got " + e);
        }
        return e.getAsJsonPrimitive();
    }
}
