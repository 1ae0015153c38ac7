/** Deterministic, caption-like English sentences for text benchmarks (lengths like alt-text: 5–30 words). */
const SUBJECTS = [
  'a dog',
  'two cats',
  'an old man',
  'a young woman',
  'a red car',
  'the city skyline',
  'a bowl of soup',
  'children',
  'a mountain lake',
  'a vintage camera',
  'a wooden table',
  'an airplane',
  'a bunch of flowers',
  'the ocean',
  'a street market',
];
const VERBS = [
  'sitting on',
  'running across',
  'standing next to',
  'looking at',
  'lying under',
  'parked near',
  'floating above',
  'painted on',
  'reflected in',
  'hidden behind',
];
const PLACES = [
  'a sunny beach',
  'the kitchen counter',
  'a busy road',
  'a snowy forest',
  'an empty room',
  'the old bridge',
  'a green field',
  'a crowded train station',
  'the garden',
  'a dark alley',
];
const EXTRAS = [
  'at sunset',
  'in black and white',
  'high resolution photo',
  'stock image',
  'with a blurry background',
  'shot on film',
  '4k wallpaper',
  'for sale, free shipping',
  'digital art, trending',
  'close-up, detailed',
  '',
];

/** `count` captions from a fixed seed; `variety` > 1 adds longer ones. */
export function sampleCaptions(count: number, seed = 1): string[] {
  let x = seed >>> 0 || 1;
  const next = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const parts = [
      SUBJECTS[next(SUBJECTS.length)],
      VERBS[next(VERBS.length)],
      PLACES[next(PLACES.length)],
      EXTRAS[next(EXTRAS.length)],
    ];
    if (next(4) === 0)
      parts.push(
        'and',
        SUBJECTS[next(SUBJECTS.length)],
        VERBS[next(VERBS.length)],
        PLACES[next(PLACES.length)],
      );
    out.push(parts.filter(Boolean).join(' '));
  }
  return out;
}
