package org.lazydit.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/** PSNR of every step's x and of the final image against the golden vectors. */
public final class VerifyReport {
    private final int[] stepIndexes;
    private final double[] stepPsnrDb;
    private final double imagePsnrDb;
    private final double thresholdDb;

    VerifyReport(int[] stepIndexes, double[] stepPsnrDb, double imagePsnrDb, double thresholdDb) {
        this.stepIndexes = stepIndexes;
        this.stepPsnrDb = stepPsnrDb;
        this.imagePsnrDb = imagePsnrDb;
        this.thresholdDb = thresholdDb;
    }

    public int[] stepIndexes() {
        return stepIndexes.clone();
    }

    public double[] stepPsnrDb() {
        return stepPsnrDb.clone();
    }

    public double imagePsnrDb() {
        return imagePsnrDb;
    }

    public double thresholdDb() {
        return thresholdDb;
    }

    /** The lowest PSNR over all steps and the image. */
    public double worstPsnrDb() {
        double worst = imagePsnrDb;
        for (double p : stepPsnrDb) {
            worst = Math.min(worst, p);
        }
        return worst;
    }

    public boolean passed() {
        return worstPsnrDb() >= thresholdDb;
    }

    /** One line per check under the threshold; empty when everything passed. */
    public List<String> failures() {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < stepPsnrDb.length; i++) {
            if (stepPsnrDb[i] < thresholdDb) {
                out.add(String.format(Locale.ROOT, "step %d: x at %.1f dB", stepIndexes[i], stepPsnrDb[i]));
            }
        }
        if (imagePsnrDb < thresholdDb) {
            out.add(String.format(Locale.ROOT, "image at %.1f dB", imagePsnrDb));
        }
        return out;
    }

    public String summary() {
        String verdict = passed() ? "golden check passed" : "golden check FAILED";
        String head = String.format(Locale.ROOT, "%s: worst %.1f dB over %d steps + image (threshold %.1f dB)",
                verdict, worstPsnrDb(), stepPsnrDb.length, thresholdDb);
        List<String> failures = failures();
        return failures.isEmpty() ? head : head + "\n  " + String.join("\n  ", failures);
    }

    @Override
    public String toString() {
        return summary();
    }
}
