package org.lazydit.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * The runtime's state: slot name to tensor. This is the whole cache mechanism; a cache slot
 * ({@code cache:<block>.<module>}) is just a slot one step writes and a later step reads.
 */
public final class State {
    public static final String X = "x";
    public static final String Y = "y";
    public static final String CFG_SCALE = "cfg_scale";
    public static final String IMAGE = "image";
    public static final String CACHE_PREFIX = "cache:";

    private final Map<String, Tensor> slots = new LinkedHashMap<>();

    private State() {}

    /** {x: noise, y: int64 [1] label, cfg_scale: float32 [1]}, as docs/bundle.md prescribes. */
    public static State initial(Tensor noise, long label, float cfgScale) {
        return of(noise, Tensor.ofLongs(new long[] {label}, 1), Tensor.scalar(cfgScale));
    }

    public static State of(Tensor x, Tensor y, Tensor cfgScale) {
        State s = new State();
        s.put(X, x);
        s.put(Y, y);
        s.put(CFG_SCALE, cfgScale);
        return s;
    }

    public static boolean isCache(String slot) {
        return slot.startsWith(CACHE_PREFIX);
    }

    public boolean has(String slot) {
        return slots.containsKey(slot);
    }

    public Tensor get(String slot) {
        Tensor t = slots.get(slot);
        if (t == null) {
            throw new IllegalStateException("slot '" + slot + "' has no value yet (holding " + slots.keySet() + ")");
        }
        return t;
    }

    public void put(String slot, Tensor value) {
        slots.put(slot, value);
    }

    public Set<String> slotNames() {
        return Collections.unmodifiableSet(slots.keySet());
    }

    /** A new state holding the same tensors; tensors are values, so sharing them is safe. */
    public State copy() {
        State s = new State();
        s.slots.putAll(slots);
        return s;
    }
}
