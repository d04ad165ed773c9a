package org.lazydit.core;

import static org.junit.Assert.assertTrue;
import static org.junit.Assume.assumeTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.Test;

/**
 * The bad-bundle corpus (tests/bad_bundles.py, -Dlazydit.corpus=DIR) through the core the way the
 * app opens a bundle: manifest, artifact digests, golden vectors, then the loop over a backend that
 * answers every method with tensors of its slots' specs (an engine that honours the manifest).
 * Each entry must be refused with a checked exception naming the problem; anything else (an
 * unchecked crash, or no complaint) fails; a program with a valid digest but a broken head is the
 * core's to refuse ({@link ProgramHeader}) before ExecuTorch maps it. Prints one line per entry for
 * the results table.
 */
public class CorpusTest {
    private static final class SlotShaped implements Backend {
        private Manifest manifest;

        @Override
        public String name() {
            return "slot-shaped";
        }

        @Override
        public void load(Path bundleDir, Manifest manifest) {
            this.manifest = manifest;
        }

        @Override
        public List<Tensor> run(String method, List<Tensor> inputs) {
            List<Tensor> outs = new ArrayList<>();
            for (MethodSpec.Output o : manifest.method(method).outputs()) {
                SlotSpec s = manifest.slot(o.target());
                outs.add(Tensor.allocate(s.dtype(), s.shape()));
            }
            return outs;
        }

        @Override
        public void close() {}
    }

    static String open(Path dir) throws IOException {
        BundleFolder folder = BundleFolder.open(dir);
        folder.verifyArtifacts("executorch");
        Golden golden = folder.readGolden();
        Backend backend = new SlotShaped();
        backend.load(dir, folder.manifest());
        new BundleRunner(folder.manifest(), backend).run(golden.initialState());
        return "accepted";
    }

    @Test
    public void everyBadBundleIsRefusedWithAMessage() throws IOException {
        String corpus = System.getProperty("lazydit.corpus", "");
        assumeTrue("no corpus given (-Dlazydit.corpus=DIR)", !corpus.isEmpty());
        Path root = Path.of(corpus);
        JsonElement list = JsonParser.parseString(Files.readString(root.resolve("corpus.json")));
        List<String> problems = new ArrayList<>();
        int refused = 0;
        for (JsonElement entry : list.getAsJsonArray()) {
            String name = entry.getAsJsonObject().get("name").getAsString();
            String outcome;
            try {
                outcome = open(root.resolve(name));
                problems.add(name + ": accepted");
            } catch (IOException | BackendException | IllegalArgumentException | IllegalStateException e) {
                outcome = "refused: " + e.getMessage().replace('\n', ' ');
                refused++;
            } catch (RuntimeException e) {
                outcome = "crashed: " + e;
                problems.add(name + ": " + outcome);
            }
            System.out.println("corpus " + name + ": " + outcome);
        }
        System.out.println("corpus: java refused " + refused + " of " + list.getAsJsonArray().size());
        assertTrue(String.join("\n", problems), problems.isEmpty());
    }
}
