package org.lazydit.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assume.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashSet;
import java.util.Set;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * The loop replayed against golden vectors: on the hand-made fixture always, and on a real exported
 * bundle when {@code -Dlazydit.bundle=DIR} is given (run-tests.sh passes $LAZYDIT_BUNDLE).
 */
public class ReplayTest {
    @Rule public TemporaryFolder tmp = new TemporaryFolder();

    /** Replays {@code dir} and returns the report of the golden check. */
    private static void replay(Path dir) throws Exception {
        BundleFolder bundle = BundleFolder.open(dir);
        Manifest m = bundle.manifest();
        Golden golden = bundle.readGolden();
        ReplayBackend backend = new ReplayBackend(golden);
        backend.load(dir, m);
        RunResult result = new BundleRunner(m, backend).run(golden.initialState());

        assertEquals("steps replayed", m.steps().size(), backend.stepsReplayed());
        assertTrue("decode ran", backend.decoded());
        Set<String> cacheReads = new LinkedHashSet<>();
        for (StepSpec s : m.steps()) {
            for (MethodSpec.Input in : m.method(s.method()).inputs()) {
                if (State.isCache(in.source())) {
                    cacheReads.add(in.source());
                }
            }
        }
        assertEquals("cache slots routed", cacheReads, backend.cacheSlotsFed());
        String imageName = m.decodeMethod().outputs().get(0).name();
        assertTrue("final image equals golden", result.image().sameAs(golden.get(Golden.decodeOutput(imageName))));
    }

    @Test
    public void fixtureBundleReplaysEveryStepRoutesTheCacheAndEndsOnTheGoldenImage() throws Exception {
        Path dir = FixtureBundle.write(tmp.newFolder("toy").toPath());
        replay(dir);
        ReplayBackend b = new ReplayBackend(BundleFolder.open(dir).readGolden());
        b.load(dir, FixtureBundle.manifest());
        new BundleRunner(FixtureBundle.manifest(), b).run(BundleFolder.open(dir).readGolden().initialState());
        assertEquals(Set.of("cache:0.attn"), b.cacheSlotsFed());
    }

    @Test
    public void computingBackendPassesTheGoldenCheck() throws Exception {
        Path dir = FixtureBundle.write(tmp.newFolder("toy").toPath());
        BundleFolder bundle = BundleFolder.open(dir);
        VerifyReport report =
                Verifier.verify(new BundleRunner(bundle.manifest(), new ToyBackend()), bundle.readGolden());
        assertTrue(report.summary(), report.passed());
        assertEquals(3, report.stepPsnrDb().length);
    }

    @Test
    public void backendThatDriftsFailsTheGoldenCheckAtThatStep() throws Exception {
        Path dir = FixtureBundle.write(tmp.newFolder("toy").toPath());
        BundleFolder bundle = BundleFolder.open(dir);
        VerifyReport report =
                Verifier.verify(new BundleRunner(bundle.manifest(), new ToyBackend(1)), bundle.readGolden());
        assertFalse(report.passed());
        assertTrue(report.summary(), report.failures().get(0).startsWith("step 1: x at"));
        assertTrue(report.stepPsnrDb()[0] > 100);
    }

    @Test
    public void exportedBundleReplays() throws Exception {
        String dir = System.getProperty("lazydit.bundle", "");
        assumeTrue("no exported bundle given (-Dlazydit.bundle=DIR)", !dir.isEmpty());
        Path path = Paths.get(dir);
        assertTrue(dir + " is not a bundle folder", Files.isRegularFile(path.resolve(Manifest.FILE_NAME)));
        replay(path);
    }
}
