use rand::{Rng, SeedableRng};

use crate::index::validate::{
    check_sorted_vector, check_sorted_vector_in_full, is_clean_sorted_vector,
};
use crate::quantize::MAX_WEIGHT;

#[test]
fn the_fast_vector_check_agrees_with_the_full_one() {
    let weights = [
        0.0,
        -0.0,
        1e-9,
        f32::MIN_POSITIVE,
        0.5,
        MAX_WEIGHT,
        f32::from_bits(MAX_WEIGHT.to_bits() + 1),
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        -1.0,
        -1e-30,
        // Either side of the smallest weight quantization keeps.
        crate::quantize::MIN_WEIGHT / 2.0,
        f32::from_bits((crate::quantize::MIN_WEIGHT / 2.0).to_bits() - 1),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (mut clean, mut unclean) = (0, 0);
    for _ in 0..20_000 {
        let n = rng.random_range(0..12);
        let mut t = rng.random_range(0..4u32);
        let v: Vec<(u32, f32)> = (0..n)
            .map(|_| {
                // Mostly ascending; sometimes equal or descending.
                t = match rng.random_range(0..20) {
                    0 => t,
                    1 => t.saturating_sub(2),
                    _ => t + rng.random_range(1..40),
                };
                let w = if rng.random_bool(0.9) {
                    rng.random_range(0.0..4.0)
                } else {
                    weights[rng.random_range(0..weights.len())]
                };
                (t, w)
            })
            .collect();
        let fast = is_clean_sorted_vector(&v, 200);
        let full = matches!(check_sorted_vector_in_full("d", &v, 200), Ok(true))
            // The full check stops at the first descending token.
            && v.windows(2).all(|p| p[0].0 < p[1].0);
        let kept = v.iter().filter(|p| crate::quantize::is_kept(p.1)).count();
        // The fast check also sends vectors with dropped weights to the
        // full one, which counts them.
        assert_eq!(fast, full && kept == v.len(), "{v:?}");
        if full {
            assert_eq!(check_sorted_vector("d", &v, 200).unwrap(), Some(kept));
        }
        if fast {
            clean += 1;
        } else {
            unclean += 1;
        }
    }

    assert!(clean > 2_000 && unclean > 2_000, "{clean} {unclean}");
    // Longer vectors with at most one fault, at every position: in the
    // unrolled chunks of eight and in the remainder.
    for n in 12..40usize {
        for at in 0..=n {
            for fault in 0..4 {
                let mut v: Vec<(u32, f32)> = (0..n).map(|i| (3 * i as u32 + 1, 0.5)).collect();
                let mut kept = n;
                if at < n {
                    match fault {
                        0 if at > 0 => v[at].0 = v[at - 1].0,
                        1 => v[at].1 = f32::NAN,
                        2 => v[at].1 = -1.0,
                        // Valid, but dropped by quantization.
                        3 => {
                            v[at].1 = 0.0;
                            kept -= 1;
                        }
                        _ => {}
                    }
                }
                let fast = is_clean_sorted_vector(&v, 200);
                let full = matches!(check_sorted_vector_in_full("d", &v, 200), Ok(true))
                    && v.windows(2).all(|p| p[0].0 < p[1].0);
                assert_eq!(fast, full && kept == n, "n {n} fault {fault} at {at}");
                if full {
                    assert_eq!(check_sorted_vector("d", &v, 200).unwrap(), Some(kept));
                }
            }
        }
    }
}
