package org.lazydit.core;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;

/** SHA-256 checks of bundle files against the manifest, to catch half-copied pushes to a phone. */
public final class BundleIntegrity {
    private BundleIntegrity() {}

    public static String sha256(Path file) throws IOException {
        MessageDigest digest;
        try {
            digest = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("this JVM has no SHA-256", e);
        }
        byte[] buf = new byte[1 << 16];
        try (InputStream in = Files.newInputStream(file)) {
            for (int n = in.read(buf); n >= 0; n = in.read(buf)) {
                digest.update(buf, 0, n);
            }
        }
        StringBuilder hex = new StringBuilder();
        for (byte b : digest.digest()) {
            hex.append(String.format("%02x", b & 0xff));
        }
        return hex.toString();
    }

    /**
     * Problems with one file: missing, a digest other than {@code expectedSha256}, or (a program) a head
     * that does not fit the file. Empty when fine.
     */
    public static List<String> check(Path bundleDir, String relativePath, String expectedSha256) throws IOException {
        List<String> problems = new ArrayList<>();
        Path file = inside(bundleDir, relativePath);
        if (!Files.isRegularFile(file)) {
            problems.add(relativePath + ": missing");
        } else if (expectedSha256 != null) {
            String actual = sha256(file);
            if (!actual.equalsIgnoreCase(expectedSha256)) {
                problems.add(relativePath + ": sha256 " + actual + " but the manifest says " + expectedSha256);
            }
        }
        if (problems.isEmpty() && relativePath.endsWith(".pte")) {
            String bad = ProgramHeader.problem(file, relativePath);
            if (bad != null) {
                problems.add(bad);
            }
        }
        return problems;
    }

    /**
     * A file the manifest names, refused unless it lies inside the bundle folder (no absolute path,
     * no '..', no link leading out): a bundle must never make the app read elsewhere.
     */
    public static Path inside(Path bundleDir, String relativePath) throws IOException {
        Path relative = Path.of(relativePath);
        boolean climbs = relativePath.isEmpty() || relative.isAbsolute() || relativePath.contains("\\");
        for (Path part : relative) {
            climbs |= part.toString().equals("..");
        }
        if (climbs) {
            throw new ManifestException(
                    "the manifest names '" + relativePath + "', which is not a file name inside the bundle folder");
        }
        Path file = bundleDir.resolve(relative);
        if (Files.exists(file) && !file.toRealPath().startsWith(bundleDir.toRealPath())) {
            throw new ManifestException("the manifest names '" + relativePath + "', which leads outside the bundle folder");
        }
        return file;
    }

    /** Throws when any file of {@code artifacts} is missing or differs from its recorded digest. */
    public static void verify(Path bundleDir, ArtifactSet artifacts) throws IOException {
        List<String> problems = new ArrayList<>();
        for (ArtifactSet.ArtifactFile f : artifacts.files()) {
            problems.addAll(check(bundleDir, f.path(), f.sha256()));
        }
        throwIfAny(bundleDir, problems);
    }

    static void throwIfAny(Path bundleDir, List<String> problems) throws IOException {
        if (!problems.isEmpty()) {
            throw new IOException("bundle " + bundleDir + " is incomplete or corrupt:\n  - "
                    + String.join("\n  - ", problems) + "\nCopy the whole bundle folder again.");
        }
    }
}
