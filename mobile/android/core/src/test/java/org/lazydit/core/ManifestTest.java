package org.lazydit.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.util.List;
import org.junit.Test;

public class ManifestTest {
    private static JsonObject method(JsonObject m, String name) {
        return m.getAsJsonObject("methods").getAsJsonObject(name);
    }

    private static JsonObject step(JsonObject m, int pos) {
        return m.getAsJsonArray("steps").get(pos).getAsJsonObject();
    }

    private static String rejection(JsonObject m) {
        ManifestException e = assertThrows(ManifestException.class, () -> Manifest.parse(m.toString()));
        return e.getMessage();
    }

    @Test
    public void fixtureManifestParsesWithStepsSlotsAndLazySteps() throws Exception {
        Manifest m = FixtureBundle.manifest();
        assertEquals(3, m.steps().size());
        assertEquals("step_lazy", m.steps().get(1).method());
        assertEquals(List.of(1), m.lazySteps());
        assertEquals(DType.INT64, m.slot("y").dtype());
        assertEquals("decode", m.decodeMethod().name());
        assertEquals(500.0, m.steps().get(1).scalars().get("t"), 0);
        assertEquals(3L, m.golden().label());
    }

    @Test
    public void stepNamingAnUnknownMethodIsRejected() {
        JsonObject m = FixtureBundle.manifestJson();
        step(m, 2).addProperty("method", "step_missing");
        String msg = rejection(m);
        assertTrue(msg, msg.contains("steps[2] (index 2) uses method 'step_missing', which is not in methods"));
    }

    @Test
    public void inputFromAScalarTheStepLacksIsRejected() {
        JsonObject m = FixtureBundle.manifestJson();
        step(m, 1).getAsJsonObject("scalars").remove("alpha");
        String msg = rejection(m);
        assertTrue(msg, msg.contains("steps[1] (index 1) feeds input 'alpha' of method 'step_lazy' from 'alpha'"));
        assertTrue(msg, msg.contains("neither a slot nor one of the step's scalars [alpha_prev, t]"));
    }

    @Test
    public void decodeNamingAMissingMethodIsRejected() {
        JsonObject m = FixtureBundle.manifestJson();
        m.getAsJsonObject("methods").remove("decode");
        String msg = rejection(m);
        assertTrue(msg, msg.contains("decode names method 'decode', which is not in methods"));
    }

    @Test
    public void absentDecodeKeyIsRejectedByName() {
        JsonObject m = FixtureBundle.manifestJson();
        m.remove("decode");
        assertTrue(rejection(m).contains("manifest.decode: missing (expected a string)"));
    }

    @Test
    public void cacheReadBeforeAnyStepWritesItIsRejected() {
        JsonObject m = FixtureBundle.manifestJson();
        JsonArray outputs = method(m, "step_full").getAsJsonArray("outputs");
        outputs.remove(1);
        String msg = rejection(m);
        assertTrue(msg, msg.contains("steps[1] (index 1) reads slot 'cache:0.attn'"));
        assertTrue(msg, msg.contains("before any earlier step writes it"));
    }

    @Test
    public void outputToAnUndeclaredSlotIsRejected() {
        JsonObject m = FixtureBundle.manifestJson();
        m.getAsJsonObject("slots").remove("cache:0.attn");
        String msg = rejection(m);
        assertTrue(msg, msg.contains("output 'attn_0' targets 'cache:0.attn', which is not a declared slot"));
    }

    @Test
    public void everyProblemIsListedAtOnce() {
        JsonObject m = FixtureBundle.manifestJson();
        step(m, 0).addProperty("method", "nope");
        m.addProperty("decode", "nope_decode");
        ManifestException e = assertThrows(ManifestException.class, () -> Manifest.parse(m.toString()));
        assertEquals(e.getMessage(), 3, e.problems().size());
    }

    @Test
    public void otherFormatOrVersionIsRejected() {
        JsonObject m = FixtureBundle.manifestJson();
        m.addProperty("version", 2);
        assertTrue(rejection(m).contains("this runtime reads version 1 only"));
    }

    @Test
    public void missingFieldIsNamedByItsPath() {
        JsonObject m = FixtureBundle.manifestJson();
        step(m, 0).remove("method");
        assertTrue(rejection(m).contains("manifest.steps[0].method: missing"));
    }

    @Test
    public void unknownSlotDtypeIsRejected() {
        JsonObject m = FixtureBundle.manifestJson();
        m.getAsJsonObject("slots").getAsJsonObject("x").addProperty("dtype", "bfloat16");
        assertTrue(rejection(m).contains("manifest.slots.x.dtype: unknown dtype 'bfloat16'"));
    }

    @Test
    public void brokenJsonIsRejected() {
        assertThrows(ManifestException.class, () -> Manifest.parse("{\"format\": "));
    }
}
